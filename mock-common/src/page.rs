//! The one look of every page the harness shows a person: the mailbox viewer, the
//! scenario report and the load report. Plain CSS inlined in each page (no file to
//! fetch, so a report opens anywhere), and a page shell built with maud, which escapes
//! every value it interpolates.

use std::sync::LazyLock;

use base64::Engine;
use maud::{DOCTYPE, Markup, html};
use sha2::{Digest, Sha256};

/// The stylesheet, inlined in each page's `<style>`.
pub const CSS: &str = "\
:root{--fg:#1b1b1b;--muted:#5c5c5c;--line:#d9d9d9;--bg2:#f5f6f7;--accent:#0b5cad;\
--pass:#0a6b2d;--fail:#b00020;--warn:#8a5a00}\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);margin:0;\
line-height:1.45}\
header.bar{background:#16324f;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1rem;\
align-items:center;flex-wrap:wrap}\
header.bar a{color:#fff}header.bar .title{font-weight:600;margin-right:auto}\
header.bar form{margin:0}\
main{max-width:72rem;margin:1.2rem auto;padding:0 1.2rem}\
h1{font-size:1.45rem;margin:.4rem 0 1rem}h2{font-size:1.15rem;margin:1.6rem 0 .6rem}\
a{color:var(--accent)}\
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem;font-size:.92rem}\
th,td{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;\
vertical-align:top;overflow-wrap:anywhere}\
th{background:var(--bg2);font-weight:600;white-space:nowrap}td.num,th.num{text-align:right;\
font-variant-numeric:tabular-nums;white-space:nowrap}\
table.fields th{width:11rem;background:none;color:var(--muted);font-weight:500}\
pre{background:var(--bg2);padding:.8rem;overflow-x:auto;font-size:.85rem;\
white-space:pre-wrap;overflow-wrap:anywhere}\
.crumbs{color:var(--muted);font-size:.9rem}\
.badge{display:inline-block;border-radius:.6rem;padding:0 .45rem;font-size:.78rem;\
border:1px solid var(--line);background:var(--bg2);margin-right:.2rem;white-space:nowrap}\
.badge.deleted{border-color:var(--fail);color:var(--fail)}\
.badge.revised{border-color:var(--warn);color:var(--warn)}\
.pass{color:var(--pass);font-weight:600;overflow-wrap:normal}\
.fail{color:var(--fail);font-weight:600;overflow-wrap:normal}\
.muted{color:var(--muted)}.error{color:var(--fail)}\
form.search{display:flex;gap:.4rem;margin:.6rem 0 1rem}\
form.search input[type=search]{flex:1;padding:.35rem .5rem;font-size:1rem}\
form.login{max-width:26rem;display:flex;flex-direction:column;gap:.6rem}\
input,button{font:inherit}button{padding:.3rem .8rem;cursor:pointer}\
iframe.body{width:100%;min-height:22rem;border:1px solid var(--line);background:#fff}\
.pager{display:flex;gap:1rem;align-items:center}\
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:.6rem 0 1rem}\
.card{border:1px solid var(--line);border-radius:.4rem;padding:.5rem .9rem;min-width:9rem}\
.card b{display:block;font-size:1.3rem}\
section{margin:1.4rem 0}svg{max-width:100%;height:auto}\
";

/// The `style-src` source that admits [`CSS`] inlined, and nothing else.
pub fn style_source() -> &'static str {
    static SOURCE: LazyLock<String> = LazyLock::new(|| {
        let digest = Sha256::digest(CSS.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    });
    &SOURCE
}

/// A whole page: the bar with `title` and whatever `bar` holds (links, a logout
/// button), then `body` in `<main>`.
pub fn document(title: &str, bar: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) }
                style { (maud::PreEscaped(CSS)) }
            }
            body {
                header.bar { span.title { (title) } (bar) }
                main { (body) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_the_style_hash_is_of_the_inlined_css() {
        let page = document(
            "<script>alert(1)</script>",
            html! {},
            html! { p { ("a & <b>") } },
        )
        .into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a &amp; &lt;b&gt;"));
        assert!(page.contains(&format!("<style>{CSS}</style>")));
        let expected =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
        assert_eq!(style_source(), format!("'sha256-{expected}'"));
    }
}
