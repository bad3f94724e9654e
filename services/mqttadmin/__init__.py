"""Administer the broker's accounts: device and worker users, passwords and ACL.

Writes the two files Mosquitto 2.0 reads at start and on SIGHUP: the password
file (``$7$`` PBKDF2-SHA512 hashes) and the ACL file (one ``user`` section per
account). ``cli.register`` adds the ``cbm mqtt`` command group.
"""
