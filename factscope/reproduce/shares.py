"""Which artefacts a share of a split reproduction runs: whole work groups, balanced by estimated cost.

Usage::

    from factscope.parallel.ranks import Shard
    from factscope.reproduce.shares import artefact_share
    artefact_share(["rets_table1", "rets_fig2", "pmet_fig2"], Shard(1, 2), {"rets_table1": 990.0, "pmet_fig2": 8.0})
    # -> ['pmet_fig2']: the trace group (Table 1, Figure 2) stays on one share

A reproduction is split by artefact, not by case: the artefacts of one group share
work that only one process may compute (one trace file, Table 3's runs that Figure 5
and MEND's one training reuse, the unedited and PMET batches of PMET's tables), so a
group always runs on one share. Groups are dealt longest first to the share with the
least estimated work (the LPT rule), ties to the lower share: the same artefacts, the
same share, on every process. Each artefact computes exactly what a one-process run
computes, so the results do not depend on the number of shares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from factscope.parallel.ranks import Shard

# Artefacts that must run in one process, in this order (the later ones read the earlier ones' work).
WORK_GROUPS: tuple[tuple[str, ...], ...] = (
    ("rets_table1", "rets_fig2", "seed001_fig2"),  # the one shared trace (out/_work/tracing)
    ("rets_table3", "rets_fig5", "seed001_tables12"),  # Figure 5 reuses Table 3's runs; one MEND training for both
    ("pmet_table1", "pmet_table3"),  # the unedited and PMET batches (out/_work/batch)
)


def work_groups(names: Sequence[str]) -> list[list[str]]:
    """``names`` cut into groups that run together (each keeps the order of ``names``); the others alone."""
    grouped: list[list[str]] = []
    placed: set[str] = set()
    for name in names:
        if name in placed:
            continue
        group = next((g for g in WORK_GROUPS if name in g), (name,))
        members = [n for n in names if n in group]
        grouped.append(members)
        placed.update(members)
    return grouped


def assign_groups(groups: Iterable[Sequence[str]], count: int, cost: Mapping[str, float]) -> list[list[str]]:
    """Per share, the artefacts it runs: groups dealt longest first to the least loaded share."""
    load = [0.0] * count
    shares: list[list[str]] = [[] for _ in range(count)]
    ordered = sorted(enumerate(groups), key=lambda item: (-sum(cost.get(n, 0.0) for n in item[1]), item[0]))
    for _, group in ordered:
        target = min(range(count), key=lambda k: (load[k], k))
        shares[target].extend(group)
        load[target] += sum(cost.get(n, 0.0) for n in group)
    return shares


def artefact_share(names: Sequence[str], shard: Shard, cost: Mapping[str, float]) -> list[str]:
    """The artefacts of ``names`` that ``shard`` runs, in the order of ``names``."""
    mine = set(assign_groups(work_groups(names), shard.count, cost)[shard.index])
    return [n for n in names if n in mine]
