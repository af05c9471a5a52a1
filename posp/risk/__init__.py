"""Risk controls (风控, terminal-link.md §11): rules as data, compiled once into
closures, evaluated purely against a snapshot of velocity counters held
exactly in the store.

* ``posp.risk.model``      the ruleset file's schema (rule kinds, scopes, actions, codes)
* ``posp.risk.ruleset``    TOML -> validated model -> CompiledRuleset
* ``posp.risk.engine``     CompiledRuleset.evaluate and the hold it asks the counters for
* ``posp.risk.counters``   the VelocityCounters Protocol and the in-memory implementation
                           (the SQL one is posp.store.risk_counters)
* ``posp.risk.lifecycle``  terminal dormancy and device/SIM binding (pure)
* ``posp.risk.reload``     the hot-reload holder
* ``posp.risk.backtest``   a candidate ruleset replayed over journal-like rows
* ``posp.risk.metrics``    posp_risk_decisions_total{rule,action}, posp_risk_evaluations_total
* ``posp.risk.settings``   the [risk] settings section
* ``posp.risk.cli``        ``posp risk validate | backtest | explain | flagged``
"""
