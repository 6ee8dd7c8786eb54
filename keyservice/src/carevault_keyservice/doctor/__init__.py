"""The hosting doctor's offline tool (``carevault-doctor``).

It holds the doctor's private escrow key, encrypted with a passphrase, and never
talks to the network. Everything cryptographic is in :mod:`carevault_crypto.escrow`,
and a recovered patient key leaves its object only through
:mod:`carevault_crypto.export`; this package only handles files, passphrases and
exit codes.
"""
