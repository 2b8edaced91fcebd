"""The mailbox layer: mailboxes, folders and messages (raw RFC 822 bytes plus properties) kept in a store.

``schema`` declares the tables and keys, ``mailstore`` reads and writes them in transactions, ``formats`` reads
and writes mbox files and Maildir folders byte for byte, ``generate`` makes realistic mail, and ``backend`` is
the interface the ``shadowstore mail`` commands use.
"""
