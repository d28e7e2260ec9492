//! Fetching SNS signing certificates.
//!
//! From SNS's own host over HTTPS (rustls, the system's roots), or, when the
//! SNS endpoint is overridden for the SDK (`AWS_ENDPOINT_URL_SNS`, else
//! `AWS_ENDPOINT_URL`), from that endpoint with a SigV4-signed GET: moto
//! serves its certificates only to a request whose `Authorization` names
//! the `sns` service. Which URLs are fetched at all is decided before, by
//! [`crate::trust::locate`].

use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::hedge::{hedged, Hedge};
use super::observe::{self, AwsCallFinished, CallOutcome};
use super::timeouts::CallLimits;
use super::{AwsError, SigningCerts};
use crate::trust::verify::MAX_CERT_BYTES;
use crate::trust::CertLocation;

const SERVICE: &str = "sns";
const OPERATION: &str = "GetSigningCertificate";
/// The pause before the next attempt, times the attempt.
const FETCH_PAUSE: Duration = Duration::from_millis(100);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Fetches certificates over HTTP(S).
pub struct HttpSigningCerts {
    client: HttpsClient,
    /// The overridden SNS endpoint, without a trailing `/`.
    endpoint: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    /// A fetch is a read: `[aws]`'s read limits (per attempt, attempts,
    /// the whole fetch).
    limits: CallLimits,
}

impl std::fmt::Debug for HttpSigningCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSigningCerts")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl HttpSigningCerts {
    /// A fetcher for `endpoint` (the overridden SNS endpoint, if any),
    /// signing requests to it with the SDK's credentials.
    pub fn new(
        endpoint: Option<String>,
        credentials: Option<SharedCredentialsProvider>,
    ) -> std::io::Result<Self> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpSigningCerts {
            client: Client::builder(TokioExecutor::new()).build(https),
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            credentials,
            limits: super::timeouts::defaults::READ,
        })
    }

    /// This fetcher with `limits` (`[aws]`'s read limits) instead of the
    /// default ones.
    pub fn with_limits(mut self, limits: CallLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The SNS endpoint override the SDK would use, from the environment.
    pub fn endpoint_from_env() -> Option<String> {
        ["AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .map(|v| v.trim().to_owned())
            .find(|v| !v.is_empty())
    }

    async fn get(&self, location: &CertLocation) -> Result<Vec<u8>, AwsError> {
        let permanent = |m: String| AwsError::permanent(SERVICE, OPERATION, m);
        let transient = |m: String| AwsError::transient(SERVICE, OPERATION, m);
        let url = &location.fetch_url;
        let mut request = http::Request::get(url.as_str())
            .header("user-agent", concat!("reflex/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| permanent(format!("{url}: {e}")))?;
        if self.endpoint.is_some() {
            self.sign(&mut request, &location.region).await?;
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| transient(format!("{url}: {e}")))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(transient(format!("{url} answered {status}")));
        }
        if status != http::StatusCode::OK {
            return Err(permanent(format!("{url} answered {status}")));
        }
        let body = Limited::new(response.into_body(), MAX_CERT_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    permanent(format!(
                        "{url}: certificate larger than {MAX_CERT_BYTES} bytes"
                    ))
                } else {
                    transient(format!("{url}: {e}"))
                }
            })?;
        Ok(body.to_bytes().to_vec())
    }

    /// Signs `request` with SigV4 for `sns` in `region`.
    async fn sign(
        &self,
        request: &mut http::Request<Empty<Bytes>>,
        region: &str,
    ) -> Result<(), AwsError> {
        let Some(provider) = &self.credentials else {
            return Err(AwsError::permanent(
                SERVICE,
                OPERATION,
                "no AWS credentials to sign the certificate request to the overridden SNS endpoint",
            ));
        };
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| AwsError::transient(SERVICE, OPERATION, format!("credentials: {e}")))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| AwsError::permanent(SERVICE, OPERATION, format!("signing: {e}")))?
            .into();
        let uri = request.uri().to_string();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
        let signable = SignableRequest::new("GET", &uri, headers, SignableBody::Bytes(&[]))
            .map_err(|e| AwsError::permanent(SERVICE, OPERATION, format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| AwsError::permanent(SERVICE, OPERATION, format!("signing: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

#[async_trait]
impl SigningCerts for HttpSigningCerts {
    fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    async fn fetch(&self, location: &CertLocation) -> Result<Vec<u8>, AwsError> {
        let started = Instant::now();
        // Like the SDK's standard retry: a transient failure (a refused
        // connection, a lost reply, a 5xx) is tried again at once, with
        // the read limits, before the message waits for its backoff.
        let CallLimits {
            attempt: per_attempt,
            operation,
            attempts,
            hedge_after,
        } = self.limits;
        // The attempts of one request; a fetch is a read, so it is hedged
        // like the SDK's reads.
        let attempts_made = || async {
            let mut attempt = 1;
            loop {
                let result = match tokio::time::timeout(per_attempt, self.get(location)).await {
                    Ok(r) => r,
                    Err(_) => Err(AwsError {
                        message: format!(
                            "{}: no answer within {per_attempt:?}",
                            location.fetch_url
                        ),
                        ..AwsError::timeout(SERVICE, OPERATION, per_attempt)
                    }),
                };
                match result {
                    Err(e) if e.transient && attempt < attempts => {
                        tokio::time::sleep(FETCH_PAUSE * attempt).await;
                        attempt += 1;
                    }
                    r => break r,
                }
            }
        };
        let requests = hedged(hedge_after, attempts_made);
        let (result, hedge) = match tokio::time::timeout(operation, requests).await {
            Ok(r) => r,
            Err(_) => (
                Err(AwsError {
                    message: format!("{}: no answer within {operation:?}", location.fetch_url),
                    ..AwsError::timeout(SERVICE, OPERATION, operation)
                }),
                Hedge::NotSent,
            ),
        };
        let (outcome, code) = match &result {
            Ok(_) => (CallOutcome::Ok, None),
            Err(e) => (CallOutcome::of_error(e), e.code.clone()),
        };
        observe::report(&AwsCallFinished {
            service: SERVICE,
            operation: OPERATION,
            outcome,
            code,
            elapsed: started.elapsed(),
            hedge,
        });
        result
    }
}
