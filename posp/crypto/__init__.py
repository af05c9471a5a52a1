"""Pure cryptography for the simulators and terminals: DES/3DES, check values,
PIN blocks, MACs, track encryption and the sign-in key block.

The switch itself never imports this package: it never holds a clear key.
"""
