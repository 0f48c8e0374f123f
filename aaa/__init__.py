"""AAA: the RADIUS side of abonent.

- ``packet``     RADIUS wire format: strict decoder, authenticators, reply encoder
- ``dictionary`` the shipped dictionary (config/dictionary/) through pyrad
- ``directory``  cached NAS clients and subscriber views the server answers from
- ``authorize``  pure: (subscriber view, credentials, vendor) → accept/reject + attributes
- ``vendors``    the vendor table: how each NAS wants its speed (and which way)
- ``mschap``     MS-CHAPv2 (RFC 2759) with its MD4 and DES
- ``accounting`` Accounting-Request → idempotent ``sessions`` upserts, leases
- ``voice``      a voice NAS (SIP proxy, VoIP gateway): Start/Stop → one call, caller check
- ``pools``      IP pools and leases
- ``server``     sockets and threads: ``RadiusServer(ctx, host, auth_port, acct_port)``
- ``client``     a small client for tests, benchmarks and simulators
"""
