"""moto's server, signing SNS deliveries the way AWS does: one certificate URL per key.

For the benchmarks only (scripts/bench-daemon), never the tests. moto 5.2.5
signs every SNS delivery with its topic's key (generated once) but builds a
new certificate under a new `SigningCertURL` for each message, so a consumer
that verifies signatures fetches a certificate per message. AWS serves one
certificate per signing key, which a consumer fetches once and caches. This
launcher keeps moto's signature and key, and points every delivery signed
with the same key at the first certificate moto issued for it. Verification
is unchanged: the signature is still checked against a certificate for the
key that made it.

Usage: python scripts/moto_stable_signer.py -H 127.0.0.1 -p PORT
"""

import sys

from moto.server import main
from moto.sns import models

_original = models.Subscription.get_post_data
_first_url = {}


def get_post_data(self, *args, **kwargs):
    data = _original(self, *args, **kwargs)
    key = self.private_key().public_key().public_numbers().n
    url = _first_url.setdefault(key, data["SigningCertURL"])
    if url != data["SigningCertURL"]:
        # drop the per-message certificate moto just stored, and point at the first
        name = data["SigningCertURL"].rsplit("/", 1)[-1]
        region = self.topic.sns_backend.region_name
        backend = models.sns_backends[models.DEFAULT_ACCOUNT_ID][region]
        backend._message_public_keys.pop(name, None)
        data["SigningCertURL"] = url
    return data


models.Subscription.get_post_data = get_post_data

if __name__ == "__main__":
    sys.exit(main())
