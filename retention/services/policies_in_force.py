"""The policies file as the ledger applies it.

The ledger keeps a subject's metadata value only as its digest (core/subjects.py), so a policy
or hold that matches on a subject key by value (a legal hold on one person's responses) is
applied with that value replaced by its digest too: it matches the records as stored, when they
are recorded, re-planned and checked before each DELETE alike.
"""

from __future__ import annotations

from pathlib import Path

from retention.config.policyfile import load_policies
from retention.config.settings import Settings
from retention.core.policies import PolicySet
from retention.core.quoting import quote
from retention.core.subjects import matches_subjects, pseudonymise_policies
from retention.errors import ConfigError
from retention.ledger.holds import with_ledger_holds
from retention.ledger.ledger import Ledger
from retention.services.subject_key import subject_key


def policies_in_force(
    settings: Settings, path: Path | None = None, *, ledger: Ledger | None = None
) -> PolicySet:
    """The validated policies file (`policies_file`, or `path`), ready for the ledger; with
    `ledger`, joined by the holds placed in it (`retention hold add`) that are in force."""
    policies = load_policies(path or settings.policies_file)
    keys = settings.erasure.subject_keys
    if matches_subjects(policies, keys):
        policies = pseudonymise_policies(policies, subject_key(settings.erasure.key_file), keys)
    if ledger is None:
        return policies
    with ledger.read() as conn:
        joined = with_ledger_holds(conn, policies)
    names = [h.name for h in policies.holds]
    for hold in joined.holds[len(policies.holds) :]:
        if hold.name in names:
            raise ConfigError(
                f"hold name {quote(hold.name)} is taken by a hold placed in the ledger "
                "(`retention hold ls`); give the file's hold another name",
                file=policies.source,
                key="holds",
            )
    return joined
