"""The rule engine: rules over gold, actions and their records."""
