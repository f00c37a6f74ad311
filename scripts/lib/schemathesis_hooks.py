"""Schemathesis hooks for scripts/schemathesis: signs every request the way iwinv clients do.

Spec §2: X-iwinv-Timestamp (Unix seconds), X-iwinv-Credential (the access key) and
X-iwinv-Signature, the hex HMAC-SHA256 keyed with the secret key of the timestamp followed by the
request path exactly as it goes on the wire (percent-encoded, without the query). The signature is
computed from the prepared request, after schemathesis has encoded the path, so that generated
path parameters are signed as sent. Cases that deliberately drop or corrupt a signature header
(negative tests, the `ignored_auth` check) are left alone by schemathesis and get 401.
"""

import hashlib
import hmac
import os
import time

import requests
import schemathesis

ACCESS_KEY = os.environ["OPENWINV_ST_ACCESS_KEY"]
SECRET_KEY = os.environ["OPENWINV_ST_SECRET_KEY"].encode()


def signature(timestamp: str, path: str) -> str:
    return hmac.new(SECRET_KEY, (timestamp + path).encode(), hashlib.sha256).hexdigest()


class _SignPath(requests.auth.AuthBase):
    """Adds X-iwinv-Signature for the timestamp header and the final, encoded path."""

    def __call__(self, r):
        timestamp = r.headers.get("X-iwinv-Timestamp")
        if timestamp is not None:
            r.headers["X-iwinv-Signature"] = signature(timestamp, r.path_url.split("?", 1)[0])
        return r


@schemathesis.auth()
class IwinvSignature:
    def get(self, case, context):
        return ACCESS_KEY

    def set(self, case, data, context):
        # Only the headers the case carries are made valid: a negative case that leaves one out
        # (the document declares all three required) must reach the server without it.
        headers = case.headers if case.headers is not None else {}
        if "X-iwinv-Timestamp" in headers:
            headers["X-iwinv-Timestamp"] = str(int(time.time()))
        if "X-iwinv-Credential" in headers:
            headers["X-iwinv-Credential"] = data
        if "X-iwinv-Signature" in headers:
            case._auth = _SignPath()


# Checked against the public example of spec §2 when the module loads.
assert (
    hmac.new(b"your_secret_key", b"1710000000/v1/example/param1/param2", hashlib.sha256).hexdigest()
    == "8ca2700c4d713ffaa657017a5d1dff97c4619512b6eef75ab1da9d38a518dc94"
)
