//! SNS signatures for tests: an RSA key and a self-signed certificate made
//! when a test first needs them, and envelopes signed with them, as SNS
//! signs (versions 1 and 2).

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use rsa::pkcs1v15;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::Value;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{pem::LineEnding, EncodePem};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use crate::trust::{SignatureVersion, SignedEnvelope, Subject};

/// The `SigningCertURL` of [`test_signer`]'s certificate: an SNS host and
/// path, so the URL check passes; the fakes serve the certificate there.
pub const TEST_CERT_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-reflextest0001.pem";

/// A key and its self-signed certificate.
pub struct TestSigner {
    key: rsa::RsaPrivateKey,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Where envelopes signed by this signer say the certificate is.
    pub cert_url: String,
}

impl TestSigner {
    /// A new 2048-bit key, with a certificate valid from `not_before` to
    /// `not_after` and served at `cert_url`.
    pub fn new(cert_url: &str, not_before: SystemTime, not_after: SystemTime) -> Self {
        // aws-lc-rs makes the key quickly; rsa signs with it (it can do
        // SHA1withRSA, which aws-lc-rs cannot sign).
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("generate an RSA key");
        let pkcs8 = pair.as_der().expect("encode the key");
        let key = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8.as_ref()).expect("read the key");
        let signer = pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
        let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).expect("key info");
        let validity = Validity {
            not_before: Time::try_from(not_before).expect("not_before"),
            not_after: Time::try_from(not_after).expect("not_after"),
        };
        let cert = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity,
            Name::from_str("CN=sns.amazonaws.com").expect("name"),
            spki,
            &signer,
        )
        .expect("certificate builder")
        .build::<pkcs1v15::Signature>()
        .expect("sign the certificate");
        TestSigner {
            key,
            cert_pem: cert.to_pem(LineEnding::LF).expect("PEM"),
            cert_url: cert_url.to_owned(),
        }
    }

    /// The base64 signature of `text` for `version`.
    pub fn sign(&self, version: SignatureVersion, text: &str) -> String {
        let bytes = match version {
            SignatureVersion::V1 => pkcs1v15::SigningKey::<sha1::Sha1>::new(self.key.clone())
                .sign(text.as_bytes())
                .to_vec(),
            SignatureVersion::V2 => pkcs1v15::SigningKey::<sha2::Sha256>::new(self.key.clone())
                .sign(text.as_bytes())
                .to_vec(),
        };
        aws_smithy_types::base64::encode(bytes)
    }

    /// `envelope` (an SNS notification, JSON) with `SignatureVersion`,
    /// `SigningCertURL` and a `Signature` over its fields, as SNS signs it.
    pub fn sign_envelope(&self, envelope: &str, version: SignatureVersion) -> String {
        self.sign_envelope_as(envelope, version, Subject::IncludedWhenPresent)
    }

    /// [`sign_envelope`](Self::sign_envelope), choosing whether the Subject
    /// is signed (moto leaves it out).
    pub fn sign_envelope_as(
        &self,
        envelope: &str,
        version: SignatureVersion,
        subject: Subject,
    ) -> String {
        let text = SignedEnvelope::parse(envelope)
            .expect("an SNS envelope")
            .string_to_sign(subject)
            .expect("every signed field");
        let mut value: Value = serde_json::from_str(envelope).expect("JSON");
        let fields = value.as_object_mut().expect("an object");
        fields.insert("SignatureVersion".into(), version.as_str().into());
        fields.insert("Signature".into(), self.sign(version, &text).into());
        fields.insert("SigningCertURL".into(), self.cert_url.clone().into());
        value.to_string()
    }
}

/// The signer every test shares: its certificate is valid from 2020 to
/// 2045 (test clocks sit anywhere in between) and is at [`TEST_CERT_URL`].
pub fn test_signer() -> &'static TestSigner {
    static SIGNER: OnceLock<TestSigner> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let year = Duration::from_secs(365 * 24 * 3600);
        TestSigner::new(
            TEST_CERT_URL,
            SystemTime::UNIX_EPOCH + 50 * year,
            SystemTime::UNIX_EPOCH + 75 * year,
        )
    })
}
