"""The pure core: IDs, durations, times, policies, deadlines, plans and outcomes. No I/O here."""
