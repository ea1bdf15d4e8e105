"""The pure core: the vocabulary, IDs, durations, times, policies, deadlines, plans, outcomes and
the parsing of what users hand us. No I/O here."""
