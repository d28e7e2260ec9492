//! Trust: whether a decoded message provably came from a trusted SNS topic.
//! Pure: no I/O, no clock (the time is passed in).
//!
//! - [`envelope`]: the signed fields of an SNS notification and the string
//!   SNS signs.
//! - [`cert_url`]: which `SigningCertURL`s are accepted, and where each is
//!   fetched from (SNS's host, or the overridden SNS endpoint).
//! - [`verify`]: the signing certificate and the RSA signature check.
//! - [`policy`]: which formats need which proof, and which are refused
//!   (`trusted_topic_arns`, `[trust]`).
//!
//! The worker fetches and caches certificates (`worker::trust`).

pub mod cert_url;
pub mod envelope;
pub mod policy;
pub mod verify;

pub use cert_url::{locate, CertLocation, CertUrlRefused};
pub use envelope::{SignatureVersion, SignedEnvelope, Subject};
pub use policy::{Proof, TrustPolicy};
pub use verify::{Refused, SigningCert};
