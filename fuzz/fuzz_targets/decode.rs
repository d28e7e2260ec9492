//! The body decoder, differential: the fast path ([`reflex::event::decode`])
//! and the reference serde path ([`reflex::event::reference::decode`]) must
//! give the same event, or poison with the same code, for every input. Each
//! input is tried as a body, and (when it is text) as the `Message` of an
//! SNS envelope, so that mutations reach the alarm inside an envelope, which
//! the fast path parses on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflex::event::{decode, reference};

fn agree(body: &[u8]) {
    let fast = decode(body);
    let slow = reference::decode(body);
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the paths decode different events"),
        (Err(a), Err(b)) => assert_eq!(a.code, b.code, "fast {a} / reference {b}"),
        _ => panic!("the paths disagree: fast {fast:?} / reference {slow:?}"),
    }
    if let Err(p) = &fast {
        assert!(!p.reason.trim().is_empty(), "poison {} without a reason", p.code);
    }
}

fuzz_target!(|data: &[u8]| {
    agree(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let message = serde_json::to_string(text).unwrap_or_default();
        let envelope = format!(
            r#"{{"Type":"Notification","MessageId":"m-1","TopicArn":"arn:aws:sns:eu-south-1:123456789012:alarms","Subject":"s","Message":{message},"Timestamp":"2026-01-12T16:30:42.289Z","SignatureVersion":"1","Signature":"c2ln","SigningCertURL":"https://sns.eu-south-1.amazonaws.com/x.pem","UnsubscribeURL":"https://sns.eu-south-1.amazonaws.com/?Action=Unsubscribe"}}"#
        );
        agree(envelope.as_bytes());
    }
});
