"""Terminal management (terminal-link.md §10): parameter sets, signed software
in a TUF repository (python-tuf), staged rollouts, and the operator commands.

The ISO 8583 dialogues (360/364/361, 0820/362) live in the pipeline; this
package gives them pure decisions (``params.processing_digit``) and storage
(``posp.store.tms``)."""
