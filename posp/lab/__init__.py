"""The lab around the switch: simulators wired in, demo data and TEST keys.

Nothing here is part of the switch.  ``posp up`` (the embedded stack),
the demo, ``posp terminal provision-fleet`` and its fleet files, the TEST zone
keys and the in-process HSM transport live in this package; ``posp.cli`` imports
it only inside those commands, and ``posp.hsm`` loads the in-process transport
by name only for ``hsm_url = "inprocess://"``.  This is the one part of ``posp``
allowed to import ``hsm_sim``, ``issuer_sim`` and ``terminals`` (import-linter
contracts in pyproject.toml keep it so).

Importing this package itself imports nothing: each module is loaded on its own.
"""
