//! Signing in to both services, and refusing a secret that was refused before.

use super::*;

/// A secret as a refusal of it is remembered: the state key, the secret bound to what it
/// was for (service address, account), and what a person is told.
struct Credential<'a> {
    key: &'static str,
    bound: Secret,
    service: &'static str,
    what: &'static str,
    /// Where the value comes from: `provider.password_env (NAME)`, ...
    setting: &'a str,
}

impl Credential<'_> {
    fn refused(&self, code: String, when: String) -> ConnectorError {
        ConnectorError::SecretRefused {
            service: self.service,
            what: self.what,
            code,
            when,
            setting: self.setting.to_owned(),
        }
    }
}

impl Connector {
    /// Logs in to both services. A secret the service refused before is not sent again
    /// (the provider locks an account after a few refusals) until the setting changes;
    /// a refusal now is remembered, as an argon2 digest only.
    pub(super) async fn log_in(&self) -> Result<(), ConnectorError> {
        let c = &self.config;
        let provider = Credential {
            key: "provider.password",
            bound: Secret::new(format!(
                "{}\0{}\0{}",
                c.provider_url,
                c.provider_username,
                c.provider_password.expose()
            )),
            service: "the provider",
            what: "password",
            setting: &c.provider_password_from,
        };
        self.refused_before(&provider)?;
        match self.provider.login().await {
            Ok(_) => self.store.clear_refused_secret(provider.key)?,
            Err(ProviderError::Login { code, message, .. }) if code == "invalid_credentials" => {
                tracing::error!(username = %c.provider_username, %message, "the provider refused the password");
                return Err(self.refused_now(&provider, code)?);
            }
            Err(ProviderError::Login { code, message, .. }) if code == "account_locked" => {
                return Err(ConnectorError::Locked {
                    username: c.provider_username.clone(),
                    message,
                    setting: c.provider_password_from.clone(),
                });
            }
            Err(ProviderError::Transport(cause)) => {
                return Err(ConnectorError::Unreachable {
                    service: "the provider",
                    setting: "provider.url",
                    url: c.provider_url.clone(),
                    cause,
                });
            }
            Err(e) => return Err(e.into()),
        }
        let application = Credential {
            key: "microsoft365.client_secret",
            bound: Secret::new(format!(
                "{}\0{}\0{}\0{}",
                c.login_url,
                c.tenant,
                c.client_id,
                c.client_secret.expose()
            )),
            service: "Microsoft 365",
            what: "client secret",
            setting: &c.client_secret_from,
        };
        self.refused_before(&application)?;
        match self.graph.sign_in().await {
            Ok(()) => self.store.clear_refused_secret(application.key)?,
            Err(GraphError::Token { error, description })
                if matches!(error.as_str(), "invalid_client" | "unauthorized_client") =>
            {
                tracing::error!(client_id = %c.client_id, %description, "Microsoft 365 refused the application's sign-in");
                return Err(self.refused_now(&application, error)?);
            }
            Err(GraphError::Transport(cause)) => {
                return Err(ConnectorError::Unreachable {
                    service: "the Microsoft 365 sign-in",
                    setting: "microsoft365.login_url",
                    url: c.login_url.clone(),
                    cause,
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Stops before sending a secret that the service already refused.
    fn refused_before(&self, credential: &Credential<'_>) -> Result<(), ConnectorError> {
        if let Some((digest, code, at)) = self.store.refused_secret(credential.key)?
            && credential.bound.matches(&digest)
        {
            return Err(credential.refused(
                code,
                format!(
                    " on {}, and this run did not send it again",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        Ok(())
    }

    /// Remembers a refusal just received (as a digest) and answers the error to stop with.
    fn refused_now(
        &self,
        credential: &Credential<'_>,
        code: String,
    ) -> Result<ConnectorError, ConnectorError> {
        match credential.bound.digest() {
            Some(digest) => {
                self.store
                    .record_refused_secret(credential.key, &digest, &code, (self.clock)())?
            }
            None => {
                tracing::warn!("no randomness for a salt: the refused secret is not remembered")
            }
        }
        Ok(credential.refused(code, String::new()))
    }
}
