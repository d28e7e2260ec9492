//! Checking an SNS signature against a signing certificate.
//!
//! The certificate is parsed with `x509-cert`; the RSA signature is checked
//! with `aws-lc-rs` (the crypto library the AWS SDK already links).

use std::fmt;

use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256,
};
use chrono::{DateTime, Utc};
use x509_cert::der::{oid::ObjectIdentifier, DecodePem};
use x509_cert::Certificate;

use super::envelope::SignatureVersion;

/// `rsaEncryption`, the only key type SNS signs with.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Largest certificate accepted, in bytes (SNS's are under 2 KiB).
pub const MAX_CERT_BYTES: usize = 16 * 1024;

/// A signing certificate, parsed once: its RSA public key and validity.
#[derive(Clone)]
pub struct SigningCert {
    /// The subject's key as the crypto library uses it, parsed once per
    /// signature version (SHA1withRSA, SHA256withRSA) when the certificate
    /// is loaded, not again at every message's check.
    v1: ParsedPublicKey,
    v2: ParsedPublicKey,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl fmt::Debug for SigningCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCert")
            .field("key_bytes", &self.v2.as_ref().len())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Why a certificate or a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SigningCert {
    /// Parses a PEM certificate with an RSA key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Refused> {
        if pem.len() > MAX_CERT_BYTES {
            return Err(Refused(format!(
                "signing certificate is {} bytes; at most {MAX_CERT_BYTES} are accepted",
                pem.len()
            )));
        }
        let cert = Certificate::from_pem(pem)
            .map_err(|e| Refused(format!("signing certificate does not parse: {e}")))?;
        let tbs = &cert.tbs_certificate;
        let spki = &tbs.subject_public_key_info;
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(Refused(format!(
                "signing certificate key is {}, not RSA",
                spki.algorithm.oid
            )));
        }
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Refused("signing certificate key is not whole bytes".into()))?;
        let time = |t: &x509_cert::time::Time| {
            let d = t.to_unix_duration();
            DateTime::<Utc>::from_timestamp(d.as_secs() as i64, 0)
                .ok_or_else(|| Refused("signing certificate validity is out of range".into()))
        };
        let parsed = |algorithm| {
            ParsedPublicKey::new(algorithm, key).map_err(|e| {
                Refused(format!(
                    "signing certificate key is not an RSA key SNS signs with: {e}"
                ))
            })
        };
        Ok(SigningCert {
            v1: parsed(&RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY)?,
            v2: parsed(&RSA_PKCS1_2048_8192_SHA256)?,
            not_before: time(&tbs.validity.not_before)?,
            not_after: time(&tbs.validity.not_after)?,
        })
    }

    /// Checks `signature` (base64, as in the envelope) over `signed` with
    /// this certificate's key, at time `now`.
    pub fn verify(
        &self,
        version: SignatureVersion,
        signed: &str,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Refused> {
        if now < self.not_before || now > self.not_after {
            return Err(Refused(format!(
                "signing certificate is valid from {} to {}, not at {}",
                self.not_before, self.not_after, now
            )));
        }
        let signature = aws_smithy_types::base64::decode(signature)
            .map_err(|_| Refused("Signature is not base64".into()))?;
        let key = match version {
            SignatureVersion::V1 => &self.v1,
            SignatureVersion::V2 => &self.v2,
        };
        key.verify_sig(signed.as_bytes(), &signature).map_err(|_| {
            Refused(format!(
                "Signature (version {}) does not match the signed fields",
                version.as_str()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::testing::signing::{test_signer, TestSigner, TEST_CERT_URL};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn both_versions_verify_and_are_not_interchangeable() {
        let signer = test_signer();
        let cert = SigningCert::from_pem(signer.cert_pem.as_bytes()).expect("parses");
        for version in [SignatureVersion::V1, SignatureVersion::V2] {
            let sig = signer.sign(version, "Message\nhello\n");
            assert_eq!(
                cert.verify(version, "Message\nhello\n", &sig, now()),
                Ok(())
            );
            let e = cert
                .verify(version, "Message\nhellO\n", &sig, now())
                .expect_err("tampered");
            assert!(e.0.contains("does not match"), "{e}");
        }
        let v1 = signer.sign(SignatureVersion::V1, "x");
        assert!(cert.verify(SignatureVersion::V2, "x", &v1, now()).is_err());
        assert!(cert
            .verify(SignatureVersion::V1, "x", "not base64!", now())
            .is_err());
    }

    #[test]
    fn a_certificate_outside_its_validity_or_another_key_is_refused() {
        let signer = test_signer();
        let cert = SigningCert::from_pem(signer.cert_pem.as_bytes()).expect("parses");
        let sig = signer.sign(SignatureVersion::V2, "x");
        let late = now() + chrono::Duration::days(365 * 30);
        let e = cert
            .verify(SignatureVersion::V2, "x", &sig, late)
            .expect_err("expired");
        assert!(e.0.contains("valid from"), "{e}");
        let year = Duration::from_secs(365 * 24 * 3600);
        let other = TestSigner::new(
            TEST_CERT_URL,
            SystemTime::UNIX_EPOCH + 50 * year,
            SystemTime::UNIX_EPOCH + 75 * year,
        );
        let other_cert = SigningCert::from_pem(other.cert_pem.as_bytes()).expect("parses");
        assert!(other_cert
            .verify(SignatureVersion::V2, "x", &sig, now())
            .is_err());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(SigningCert::from_pem(b"hello").is_err());
        assert!(SigningCert::from_pem(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        .is_err());
        let big = vec![b'A'; MAX_CERT_BYTES + 1];
        assert!(SigningCert::from_pem(&big)
            .expect_err("too big")
            .0
            .contains("bytes"));
    }
}
