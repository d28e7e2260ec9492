//! The trust gate: whether a decoded message may be acted on. Applies the
//! [`TrustPolicy`], and verifies SNS signatures with certificates fetched
//! through [`SigningCerts`] and cached by URL.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::aws::{AwsError, SigningCerts};
use crate::event::{AlarmEvent, Poison, PoisonCode};
use crate::trust::{
    locate, CertLocation, Proof, SignatureVersion, SignedEnvelope, SigningCert, Subject,
    TrustPolicy,
};

/// How many certificates are kept (SNS rotates its certificate rarely;
/// moto makes one per message).
pub const CERT_CACHE_SIZE: usize = 32;

/// A cached certificate, or the fetch of one under way (or failed, to be
/// tried again).
type CertSlot = Arc<OnceCell<Arc<SigningCert>>>;

/// What the gate decided.
#[derive(Debug)]
pub enum Admission {
    /// The message may be acted on.
    Admitted,
    /// Never to be acted on: dead-letter it with this code.
    Refused(Poison),
    /// The certificate could not be fetched now: retry the message later.
    Unavailable(AwsError),
}

/// The gate every decoded message passes before evaluation.
pub struct TrustGate {
    policy: TrustPolicy,
    certs: Arc<dyn SigningCerts>,
    /// (fetch URL, its certificate once fetched), most recently used last.
    cache: Mutex<VecDeque<(String, CertSlot)>>,
    leniency_logged: AtomicBool,
}

impl TrustGate {
    pub fn new(policy: TrustPolicy, certs: Arc<dyn SigningCerts>) -> Self {
        TrustGate {
            policy,
            certs,
            cache: Mutex::new(VecDeque::with_capacity(CERT_CACHE_SIZE)),
            leniency_logged: AtomicBool::new(false),
        }
    }

    pub fn policy(&self) -> &TrustPolicy {
        &self.policy
    }

    /// Decides on `event`, decoded from `body`, at `now`; with the time
    /// spent fetching its signing certificate (an AWS call, not reflex's own
    /// processing; zero when the certificate was cached).
    pub async fn admit(
        &self,
        body: &str,
        event: &AlarmEvent,
        now: DateTime<Utc>,
    ) -> (Admission, Duration) {
        let mut fetching = Duration::ZERO;
        let admission = self.admit_fetching(body, event, now, &mut fetching).await;
        (admission, fetching)
    }

    async fn admit_fetching(
        &self,
        body: &str,
        event: &AlarmEvent,
        now: DateTime<Utc>,
        fetching: &mut Duration,
    ) -> Admission {
        let envelope = match event.format {
            crate::event::EventFormat::Sns => match SignedEnvelope::parse(body) {
                Ok(e) => Some(e),
                Err(e) => return Admission::Refused(bad(format!("envelope fields: {e}"))),
            },
            _ => None,
        };
        let signed = envelope.as_ref().is_some_and(SignedEnvelope::is_signed);
        match self.policy.admit(event, signed) {
            Err(poison) => Admission::Refused(poison),
            Ok(Proof::None) => Admission::Admitted,
            Ok(Proof::Signature) => match envelope {
                Some(envelope) => self.verify(&envelope, now, fetching).await,
                None => Admission::Refused(bad("no envelope to verify".into())),
            },
        }
    }

    async fn verify(
        &self,
        envelope: &SignedEnvelope<'_>,
        now: DateTime<Utc>,
        fetching: &mut Duration,
    ) -> Admission {
        let version = envelope.signature_version.as_deref().unwrap_or("");
        let Some(version) = SignatureVersion::parse(version) else {
            return Admission::Refused(bad(format!(
                "SignatureVersion {version:?} is neither 1 nor 2"
            )));
        };
        let (Some(signature), Some(url)) = (
            envelope.signature.as_deref(),
            envelope.signing_cert_url.as_deref(),
        ) else {
            return Admission::Refused(bad("Signature or SigningCertURL is missing".into()));
        };
        let (Some(partition), Some(region)) = (envelope.topic_partition(), envelope.topic_region())
        else {
            return Admission::Refused(bad("TopicArn is not an SNS topic ARN".into()));
        };
        let location = match locate(url, partition, region, self.certs.endpoint()) {
            Ok(l) => l,
            Err(refused) => return Admission::Refused(bad(refused.0)),
        };
        let cert = match self.cert(&location, fetching).await {
            Ok(c) => c,
            Err(admission) => return admission,
        };
        // moto leaves Subject out of the string it signs. Only for a
        // certificate from an overridden endpoint that is not AWS; tried
        // first there, so that a message from moto costs one check, not
        // two. A signature from AWS is only ever checked as AWS signs.
        if location.from_emulator && envelope.subject.is_some() {
            if let Some(without) = envelope.string_to_sign(Subject::Omitted) {
                if cert.verify(version, &without, signature, now).is_ok() {
                    if !self.leniency_logged.swap(true, Ordering::Relaxed) {
                        warn!(
                            endpoint = self.certs.endpoint().unwrap_or(""),
                            "Accepted an SNS signature that leaves Subject out, as moto signs: \
                             allowed only for certificates from an overridden, non-AWS SNS endpoint."
                        );
                    }
                    return Admission::Admitted;
                }
            }
        }
        let Some(signed) = envelope.string_to_sign(Subject::IncludedWhenPresent) else {
            return Admission::Refused(bad(
                "a signed field (Message, MessageId, Timestamp, TopicArn, Type) is missing".into(),
            ));
        };
        match cert.verify(version, &signed, signature, now) {
            Ok(()) => Admission::Admitted,
            Err(refused) => Admission::Refused(bad(refused.0)),
        }
    }

    /// The certificate at `location`, cached or fetched (adding the time
    /// spent fetching, or waiting for another message's fetch of the same
    /// URL, to `fetching`).
    ///
    /// One fetch per URL at a time: messages that arrive together with a
    /// certificate not yet cached (a backlog at start-up, a rotation) wait
    /// for the first one's fetch instead of each fetching it. If that fetch
    /// fails, the next waiter fetches in turn.
    async fn cert(
        &self,
        location: &CertLocation,
        fetching: &mut Duration,
    ) -> Result<Arc<SigningCert>, Admission> {
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let found = cache
                .iter()
                .position(|(u, _)| *u == location.fetch_url)
                .and_then(|i| cache.remove(i));
            match found {
                Some(entry) => {
                    let slot = Arc::clone(&entry.1);
                    cache.push_back(entry);
                    slot
                }
                None => {
                    if cache.len() >= CERT_CACHE_SIZE {
                        cache.pop_front();
                    }
                    let slot = Arc::new(OnceCell::new());
                    cache.push_back((location.fetch_url.clone(), Arc::clone(&slot)));
                    slot
                }
            }
        };
        if let Some(cert) = slot.get() {
            return Ok(Arc::clone(cert));
        }
        let started = tokio::time::Instant::now();
        let cert = slot.get_or_try_init(|| self.fetch(location)).await;
        *fetching += started.elapsed();
        if cert.is_err() {
            // A URL that failed, with no other message waiting for it,
            // keeps no place in the cache (a burst of bad URLs must not push
            // the good certificate out). Under the lock, the cache's count
            // and this one are all there are, or someone else waits.
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if Arc::strong_count(&slot) <= 2 && !slot.initialized() {
                cache.retain(|(_, s)| !Arc::ptr_eq(s, &slot));
            }
        }
        cert.map(Arc::clone)
    }

    async fn fetch(&self, location: &CertLocation) -> Result<Arc<SigningCert>, Admission> {
        let pem = match self.certs.fetch(location).await {
            Ok(pem) => pem,
            Err(e) if e.transient => return Err(Admission::Unavailable(e)),
            Err(e) => {
                return Err(Admission::Refused(bad(format!(
                    "the signing certificate could not be fetched: {e}"
                ))))
            }
        };
        let cert = SigningCert::from_pem(&pem).map_err(|r| Admission::Refused(bad(r.0)))?;
        Ok(Arc::new(cert))
    }

    /// How many certificates are cached (for tests and `/metrics`).
    pub fn cached(&self) -> usize {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.iter().filter(|(_, slot)| slot.initialized()).count()
    }
}

fn bad(reason: String) -> Poison {
    Poison::new(PoisonCode::BadSignature, reason)
}

/// A certificate source that has none: every SNS signature is refused.
/// The default of a [`crate::worker::Worker`] until the daemon (or a test)
/// sets a real one.
pub struct NoSigningCerts;

#[async_trait::async_trait]
impl SigningCerts for NoSigningCerts {
    fn endpoint(&self) -> Option<&str> {
        None
    }

    async fn fetch(&self, location: &CertLocation) -> Result<Vec<u8>, AwsError> {
        Err(AwsError::permanent(
            "sns",
            "GetSigningCertificate",
            format!(
                "no certificate source configured for {}",
                location.fetch_url
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode_str;
    use crate::testing::signing::{test_signer, TestSigner};
    use crate::testing::{AlarmBody, FakeAws};
    use crate::trust::SignatureVersion;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alarms";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn gate(policy: TrustPolicy) -> (TrustGate, FakeAws) {
        let aws = FakeAws::new();
        (TrustGate::new(policy, Arc::new(aws.clone())), aws)
    }

    async fn admit(gate: &TrustGate, body: &str) -> Admission {
        let event = decode_str(body).expect("decodes");
        gate.admit(body, &event, now()).await.0
    }

    fn code(a: &Admission) -> Option<&'static str> {
        match a {
            Admission::Refused(p) => Some(p.code.as_str()),
            _ => None,
        }
    }

    fn unsigned() -> String {
        AlarmBody::default().sns_unsigned(TOPIC, "m-1")
    }

    #[tokio::test]
    async fn genuine_envelopes_of_both_versions_are_admitted_with_and_without_subject() {
        let (gate, _) = gate(TrustPolicy::topics(&[TOPIC]));
        for version in [SignatureVersion::V1, SignatureVersion::V2] {
            let body = test_signer().sign_envelope(&unsigned(), version);
            assert!(
                matches!(admit(&gate, &body).await, Admission::Admitted),
                "{version:?}"
            );
            let mut v: serde_json::Value = serde_json::from_str(&unsigned()).expect("json");
            v.as_object_mut().expect("object").remove("Subject");
            let body = test_signer().sign_envelope(&v.to_string(), version);
            assert!(
                matches!(admit(&gate, &body).await, Admission::Admitted),
                "{version:?} without Subject"
            );
        }
    }

    #[tokio::test]
    async fn a_tampered_field_is_a_bad_signature() {
        let (gate, _) = gate(TrustPolicy::topics(&[TOPIC]));
        let body = test_signer().sign_envelope(&unsigned(), SignatureVersion::V1);
        let mut v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let message = v["Message"]
            .as_str()
            .expect("message")
            .replace("web", "api");
        let tampered = [
            ("Message", serde_json::Value::from(message)),
            ("Timestamp", "2026-01-12T16:30:42.301Z".into()),
            ("MessageId", "m-2".into()),
            ("Subject", "OK".into()),
        ];
        for (field, value) in tampered {
            let mut t = v.clone();
            t[field] = value;
            let a = admit(&gate, &t.to_string()).await;
            assert_eq!(code(&a), Some("bad_signature"), "{field}: {a:?}");
        }
        // Another trusted topic, same signature.
        let other = "arn:aws:sns:us-east-1:123456789012:other";
        let (gate2, _) = super::tests::gate(TrustPolicy::topics(&[TOPIC, other]));
        v["TopicArn"] = other.into();
        assert_eq!(
            code(&admit(&gate2, &v.to_string()).await),
            Some("bad_signature")
        );
    }

    #[tokio::test]
    async fn certificate_urls_off_sns_are_refused_without_a_fetch() {
        let (gate, aws) = gate(TrustPolicy::topics(&[TOPIC]));
        let body = test_signer().sign_envelope(&unsigned(), SignatureVersion::V2);
        let own = test_signer().cert_url.clone();
        for url in [
            own.replace("https://", "http://"),
            own.replace("sns.us-east-1.amazonaws.com", "evil.example"),
            own.replace(
                "sns.us-east-1.amazonaws.com",
                "sns.us-east-1.amazonaws.com.evil.example",
            ),
        ] {
            let mut v: serde_json::Value = serde_json::from_str(&body).expect("json");
            v["SigningCertURL"] = url.clone().into();
            let a = admit(&gate, &v.to_string()).await;
            assert_eq!(code(&a), Some("bad_signature"), "{url}: {a:?}");
        }
        assert!(
            aws.state().calls.is_empty(),
            "fetched: {:?}",
            aws.state().calls
        );
    }

    #[tokio::test]
    async fn certificates_are_cached_by_url_and_the_cache_is_bounded() {
        let (gate, aws) = gate(TrustPolicy::topics(&[TOPIC]));
        for i in 0..3 {
            let body = test_signer().sign_envelope(
                &AlarmBody::default().sns_unsigned(TOPIC, &format!("m-{i}")),
                SignatureVersion::V1,
            );
            assert!(matches!(admit(&gate, &body).await, Admission::Admitted));
        }
        assert_eq!(aws.state().calls, vec!["sns:GetSigningCertificate"]);
        assert_eq!(gate.cached(), 1);
        // Many distinct URLs: the cache stays at its bound.
        for i in 0..(CERT_CACHE_SIZE + 3) {
            let url =
                format!("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x{i}.pem");
            aws.state()
                .signing_certs
                .insert(url.clone(), test_signer().cert_pem.clone());
            let location = locate(&url, "aws", "us-east-1", None).expect("url");
            let mut fetching = Duration::ZERO;
            assert!(gate.cert(&location, &mut fetching).await.is_ok());
        }
        assert_eq!(gate.cached(), CERT_CACHE_SIZE);
    }

    /// The certificate fetch is an AWS call: its time is reported apart,
    /// so that it does not count as reflex's own processing; a cached
    /// certificate costs none.
    #[tokio::test(start_paused = true)]
    async fn the_time_spent_fetching_the_certificate_is_reported() {
        let (gate, aws) = gate(TrustPolicy::topics(&[TOPIC]));
        aws.slow_next("sns:GetSigningCertificate", Duration::from_millis(300));
        let mut fetches = Vec::new();
        for i in 0..2 {
            let body = test_signer().sign_envelope(
                &AlarmBody::default().sns_unsigned(TOPIC, &format!("m-{i}")),
                SignatureVersion::V1,
            );
            let event = decode_str(&body).expect("decodes");
            let (admission, fetching) = gate.admit(&body, &event, now()).await;
            assert!(matches!(admission, Admission::Admitted));
            fetches.push(fetching);
        }
        assert_eq!(fetches, [Duration::from_millis(300), Duration::ZERO]);
    }

    fn signed(id: &str) -> (String, AlarmEvent) {
        let body = test_signer().sign_envelope(
            &AlarmBody::default().sns_unsigned(TOPIC, id),
            SignatureVersion::V2,
        );
        let event = decode_str(&body).expect("decodes");
        (body, event)
    }

    /// Messages that arrive together, signed with a certificate not yet
    /// cached, fetch it once: the others wait for that fetch, and report
    /// the wait as time spent fetching.
    #[tokio::test(start_paused = true)]
    async fn messages_arriving_together_fetch_their_certificate_once() {
        let (gate, aws) = gate(TrustPolicy::topics(&[TOPIC]));
        aws.slow_next("sns:GetSigningCertificate", Duration::from_millis(300));
        let (a, b, c) = (signed("m-a"), signed("m-b"), signed("m-c"));
        let (ra, rb, rc) = tokio::join!(
            gate.admit(&a.0, &a.1, now()),
            gate.admit(&b.0, &b.1, now()),
            gate.admit(&c.0, &c.1, now()),
        );
        for (admission, fetching) in [ra, rb, rc] {
            assert!(matches!(admission, Admission::Admitted), "{admission:?}");
            assert_eq!(fetching, Duration::from_millis(300));
        }
        assert_eq!(aws.state().calls, vec!["sns:GetSigningCertificate"]);
        assert_eq!(gate.cached(), 1);
    }

    /// When the shared fetch fails, its own message is retried later and a
    /// message that was waiting for it fetches in turn.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_fetches_again_when_the_shared_fetch_fails() {
        let (gate, aws) = gate(TrustPolicy::topics(&[TOPIC]));
        aws.slow_next("sns:GetSigningCertificate", Duration::from_millis(300));
        aws.fail_next(
            "sns:GetSigningCertificate",
            AwsError::transient("sns", "GetSigningCertificate", "connection reset"),
        );
        let (a, b) = (signed("m-a"), signed("m-b"));
        let ((first, _), (second, _)) =
            tokio::join!(gate.admit(&a.0, &a.1, now()), gate.admit(&b.0, &b.1, now()),);
        assert!(
            matches!(first, Admission::Unavailable(ref e) if e.transient),
            "{first:?}"
        );
        assert!(matches!(second, Admission::Admitted), "{second:?}");
        assert_eq!(
            aws.state().calls,
            vec!["sns:GetSigningCertificate", "sns:GetSigningCertificate"]
        );
        assert_eq!(gate.cached(), 1);
    }

    /// A URL whose certificate cannot be had keeps no place in the cache.
    #[tokio::test]
    async fn a_failed_url_takes_no_place_in_the_cache() {
        let (gate, _) = gate(TrustPolicy::topics(&[TOPIC]));
        let (body, event) = signed("m-1");
        assert!(matches!(
            gate.admit(&body, &event, now()).await.0,
            Admission::Admitted
        ));
        let url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-nothing.pem";
        let location = locate(url, "aws", "us-east-1", None).expect("url");
        let mut fetching = Duration::ZERO;
        assert!(gate.cert(&location, &mut fetching).await.is_err());
        let urls: Vec<String> = gate
            .cache
            .lock()
            .expect("cache")
            .iter()
            .map(|(u, _)| u.clone())
            .collect();
        assert_eq!(urls, vec![test_signer().cert_url.clone()]);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_retried_and_a_missing_certificate_is_refused() {
        let (gate, aws) = gate(TrustPolicy::topics(&[TOPIC]));
        let body = test_signer().sign_envelope(&unsigned(), SignatureVersion::V1);
        aws.fail_next(
            "sns:GetSigningCertificate",
            AwsError::transient("sns", "GetSigningCertificate", "connection reset"),
        );
        assert!(matches!(admit(&gate, &body).await, Admission::Unavailable(e) if e.transient));
        assert!(
            matches!(admit(&gate, &body).await, Admission::Admitted),
            "retry succeeds"
        );
        // A URL on the SNS host that serves nothing.
        let mut v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["SigningCertURL"] =
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-nothing.pem".into();
        let a = admit(&gate, &v.to_string()).await;
        assert_eq!(code(&a), Some("bad_signature"), "{a:?}");
    }

    #[tokio::test]
    async fn the_subject_leniency_is_for_emulator_certificates_only() {
        let moto_like = |endpoint: Option<&str>| {
            struct At(Option<String>);
            #[async_trait::async_trait]
            impl SigningCerts for At {
                fn endpoint(&self) -> Option<&str> {
                    self.0.as_deref()
                }
                async fn fetch(&self, l: &CertLocation) -> Result<Vec<u8>, AwsError> {
                    let _ = l;
                    Ok(test_signer().cert_pem.clone().into_bytes())
                }
            }
            TrustGate::new(
                TrustPolicy::topics(&[TOPIC]),
                Arc::new(At(endpoint.map(str::to_owned))),
            )
        };
        let body =
            test_signer().sign_envelope_as(&unsigned(), SignatureVersion::V2, Subject::Omitted);
        let emulator = moto_like(Some("http://127.0.0.1:5000"));
        assert!(matches!(admit(&emulator, &body).await, Admission::Admitted));
        let aws = moto_like(None);
        assert_eq!(code(&admit(&aws, &body).await), Some("bad_signature"));
        let aws_endpoint = moto_like(Some("https://sns-fips.us-east-1.amazonaws.com"));
        assert_eq!(
            code(&admit(&aws_endpoint, &body).await),
            Some("bad_signature")
        );
    }

    #[tokio::test]
    async fn unsigned_formats_follow_the_policy() {
        let raw = AlarmBody::default().raw();
        let (open, _) = gate(TrustPolicy::default());
        assert!(matches!(admit(&open, &raw).await, Admission::Admitted));
        assert!(matches!(
            admit(&open, &unsigned()).await,
            Admission::Admitted
        ));
        let (strict, _) = gate(TrustPolicy::topics(&[TOPIC]));
        assert_eq!(code(&admit(&strict, &raw).await), Some("unsigned_refused"));
        assert_eq!(
            code(&admit(&strict, &unsigned()).await),
            Some("unsigned_refused")
        );
        let other = AlarmBody::default().sns_unsigned("arn:aws:sns:us-east-1:123456789012:x", "m");
        assert_eq!(code(&admit(&strict, &other).await), Some("untrusted_topic"));
        let (raw_ok, _) = gate(TrustPolicy {
            accept_raw: true,
            ..TrustPolicy::topics(&[TOPIC])
        });
        assert!(matches!(admit(&raw_ok, &raw).await, Admission::Admitted));
        let (accounts, _) = gate(TrustPolicy {
            accept_raw: true,
            trusted_accounts: vec!["999999999999".into()],
            ..TrustPolicy::topics(&[TOPIC])
        });
        assert_eq!(
            code(&admit(&accounts, &raw).await),
            Some("untrusted_source")
        );
        // Even with no trusted topics, a signature that is present must verify.
        let forged = test_signer()
            .sign_envelope(&unsigned(), SignatureVersion::V1)
            .replace("m-1", "m-9");
        assert_eq!(code(&admit(&open, &forged).await), Some("bad_signature"));
    }

    #[tokio::test]
    async fn an_expired_certificate_is_refused() {
        let year = std::time::Duration::from_secs(365 * 24 * 3600);
        let url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-old.pem";
        let old = TestSigner::new(
            url,
            std::time::SystemTime::UNIX_EPOCH + 40 * year,
            std::time::SystemTime::UNIX_EPOCH + 45 * year,
        );
        let (gate, aws) = gate(TrustPolicy::topics(&[TOPIC]));
        aws.state()
            .signing_certs
            .insert(url.into(), old.cert_pem.clone());
        let body = old.sign_envelope(&unsigned(), SignatureVersion::V2);
        let a = admit(&gate, &body).await;
        assert!(
            matches!(&a, Admission::Refused(p) if p.reason.contains("valid from")),
            "{a:?}"
        );
    }
}
