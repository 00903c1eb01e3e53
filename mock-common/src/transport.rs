//! Seeded faults of the transport, the same on both fakes: answers that come late, and
//! connections reset in the middle of an answer's body. Each is drawn, like every other
//! seeded fault, from what the request is about and its attempt number, never from
//! arrival order.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;

use crate::seeded::IdentityDraws;

/// How often answers are slow or cut, and how slow.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TransportFaults {
    pub seed: u64,
    /// Share of requests answered only after a delay, uniform in (0, `slow_max_ms`].
    pub slow_rate: f64,
    pub slow_max_ms: u64,
    /// Share of successful answers whose body breaks off half-way: the status line and
    /// headers arrive, then the connection is reset. Whatever the request did has been
    /// done; the client cannot read that it was.
    pub reset_rate: f64,
}

/// What the transport does to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drawn {
    pub delay: Option<Duration>,
    pub reset: bool,
}

impl TransportFaults {
    pub fn configured(&self) -> bool {
        self.slow_rate > 0.0 || self.reset_rate > 0.0
    }

    /// The transport's faults for the next attempt of the request `identity`.
    pub fn draw(&self, draws: &IdentityDraws, identity: &str) -> Drawn {
        if !self.configured() {
            return Drawn::default();
        }
        let slow = draws.draw(self.seed, &format!("slow {identity}"));
        let reset = draws.draw(self.seed, &format!("reset {identity}"));
        Drawn {
            delay: (slow < self.slow_rate).then(|| {
                let share = slow / self.slow_rate;
                Duration::from_millis(((share * self.slow_max_ms as f64) as u64).max(1))
            }),
            reset: reset < self.reset_rate,
        }
    }
}

/// The same answer, but its body breaks off after half of its bytes and the connection
/// is reset (no `Content-Length`, so the client learns only from the broken stream).
pub async fn cut_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let half = bytes.slice(..bytes.len() / 2);
    // The break comes only after a yield, so that the server writes the status line,
    // the headers and the first half out before it drops the connection.
    let first = futures_util::stream::once(async move { Ok(half) });
    let broken = futures_util::stream::once(async {
        tokio::task::yield_now().await;
        Err::<axum::body::Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "seeded fault: connection reset in the middle of the body",
        ))
    });
    Response::from_parts(
        parts,
        Body::from_stream(futures_util::StreamExt::chain(first, broken)),
    )
}

/// Marks an answer as a seeded fault (a response extension, never sent): a harness that
/// makes time pass while a client is throttled leaves injected 429s alone.
#[derive(Debug, Clone, Copy)]
pub struct Injected;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_rates_and_the_bound() {
        let faults = TransportFaults {
            seed: 3,
            slow_rate: 0.25,
            slow_max_ms: 40,
            reset_rate: 0.1,
        };
        let draws = IdentityDraws::default();
        let drawn: Vec<Drawn> = (0..4000)
            .map(|n| faults.draw(&draws, &format!("request {n}")))
            .collect();
        let slow = drawn.iter().filter(|d| d.delay.is_some()).count();
        let reset = drawn.iter().filter(|d| d.reset).count();
        assert!((850..1150).contains(&slow), "{slow} slow of 4000");
        assert!((300..500).contains(&reset), "{reset} reset of 4000");
        assert!(
            drawn
                .iter()
                .filter_map(|d| d.delay)
                .all(|d| d > Duration::ZERO && d <= Duration::from_millis(40))
        );
        // The same request's next attempt is a new draw; a new server draws the same.
        let again = IdentityDraws::default();
        assert_eq!(faults.draw(&again, "request 7"), drawn[7]);
        assert_eq!(
            TransportFaults::default().draw(&again, "x"),
            Drawn::default()
        );
    }

    #[tokio::test]
    async fn a_cut_body_breaks_off_half_way() {
        let response = Response::new(Body::from("0123456789"));
        let cut = cut_body(response).await;
        let error = axum::body::to_bytes(cut.into_body(), usize::MAX).await;
        assert!(error.is_err(), "the body must end in an error, not cleanly");
    }
}
