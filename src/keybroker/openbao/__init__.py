"""Keys that never leave OpenBao: HMAC secrets imported into transit, Ed25519/ES256 keys made there.

    >>> connection = load(home)                                   # <home>/openbao.json
    >>> session = Session(connection, AsyncOpenBao(connection.addr))
    >>> batcher = Batcher(session, connection.mount)
    >>> signed = await sign_in_two_passes(lambda signer: sign_with(key.bind(signer)), batcher)

Layer 2, beside policy, audit and ratelimit: it talks to a server, so it
sits above the pure crypto and exchange layers. The exchange signers never
import it; they sign with whatever ``crypto.keys.RemoteKey`` the gateway
bound to a signer from here (``two_pass``'s recorder and replayer on the
event loop; ``ThreadSigner`` in a worker thread when a signer does not
replay). docs/openbao.md says what this does and does not protect against.
"""

from keybroker.openbao.batcher import Ask, Batcher, ThreadSigner
from keybroker.openbao.client import AsyncOpenBao, OpenBao, check_addr
from keybroker.openbao.connection import Connection, load, save, spend_secret_id
from keybroker.openbao.direct import DirectSigner
from keybroker.openbao.session import Session
from keybroker.openbao.transit import STORE, PolicyKey, new_key_name, policy_hcl
from keybroker.openbao.two_pass import sign_in_two_passes

__all__ = [
    "STORE",
    "Ask",
    "AsyncOpenBao",
    "Batcher",
    "Connection",
    "DirectSigner",
    "OpenBao",
    "PolicyKey",
    "Session",
    "ThreadSigner",
    "check_addr",
    "load",
    "new_key_name",
    "policy_hcl",
    "save",
    "sign_in_two_passes",
    "spend_secret_id",
]
