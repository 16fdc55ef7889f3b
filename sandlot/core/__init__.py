"""The domain: sandbox state machine, rules, and the service that orchestrates adapters."""
