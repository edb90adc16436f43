"""Low-level primitives: the only package that imports ``cryptography``.

This is keybroker's hazmat layer. Use ``keybroker.vault`` to store keys and
``keybroker.exchanges`` to sign requests; call into here only when building
one of those. Keeping every use of ``cryptography`` in this one package lets a
reviewer read all of keybroker's cryptography in one sitting.
"""
