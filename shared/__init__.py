"""What the three Errands services share: settings, events, Kafka and database plumbing, auth, HTTP."""
