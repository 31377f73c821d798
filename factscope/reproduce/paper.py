"""The papers' numbers, copied as printed in the seed texts (shared/seeds/000, 001, 003).

Usage::

    RETS_TABLE1["lr"]          # {"GPT2-XL": "2.23", "GPT-J": "3.15", "Llama-2": "0.06"}
    markdown_table(RETS_TABLE3_HEADER, RETS_TABLE3_ROWS)

Strings, not floats: the report quotes them exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

# Seed 000 (RETS), Table 1: Average AIER(%) per position, relation corruption.
RETS_TABLE1_MODELS = ("GPT2-XL", "GPT-J", "Llama-2")
RETS_TABLE1 = {
    "rp": ("0.03", "0.03", "0.01"),
    "fs": ("0.04", "0.04", "0.01"),
    "ms": ("0.04", "0.04", "0.02"),
    "ls": ("0.04", "0.04", "0.01"),
    "fr": ("0.06", "0.06", "0.01"),
    "mr": ("0.06", "0.06", "0.02"),
    "lr": ("2.23", "3.15", "0.06"),
}
RETS_FIG2 = ("Figure 2 (GPT2-XL, 1000 facts): for both MLP and MHSA the most significant outputs are at the "
             "last-relation token; rp contributes little; active MLP sublayers amass from the early layers to "
             "the middle-late site of the model.")
# Seed 000, Table 2 and Figure 3 (GPT2-XL over 1000 prompts).
RETS_TABLE2 = {"GPT2-XL": ("68", "0.97"), "GPT-J": ("83", "0.73")}  # Objects Included(%), rho
RETS_FIG3 = ("Figure 3: the average attributes rate rises significantly from layer 0 till the 36-th layer (of 48) "
             "and becomes stable afterwards; blocking MLP leads to a much more significant drop in attributes rate "
             "than blocking MHSA across layers; the average ranking of the target objects rises from early to "
             "middle-late layers while that of random tokens remains low.")
# Seed 000, Table 3 (COUNTERFACT). Columns as printed.
RETS_TABLE3_HEADER = ("Editor", "Score", "Efficacy", "Generalization", "S-Specificity", "R-Specificity", "Fluency", "Consistency")
RETS_TABLE3_ROWS = (
    ("GPT2-XL", "55.9", "21.0", "24.1", "78.6", "100.0", "626.8", "34.7"),
    ("FT-L", "73.1", "99.2", "47.8", "70.6", "74.9", "623.3", "37.6"),
    ("MEND", "63.2", "62.3", "53.1", "51.7", "85.6", "603.7", "32.7"),
    ("ROME", "78.4", "100.0", "96.4", "76.0", "41.1", "622.6", "42.0"),
    ("PMET*", "79.3", "99.2", "94.3", "76.0", "47.6", "622.7", "41.8"),
    ("RETS", "79.7", "100.0", "71.5", "68.6", "78.5", "577.4", "32.6"),
    ("- w/o SC", "71.1", "100.0", "67.2", "35.1", "86.9", "626.1", "34.9"),
    ("GPT-J", "53.2", "13.7", "15.3", "83.7", "100.0", "621.7", "29.7"),
    ("FT-L", "79.3", "99.6", "47.4", "80.1", "89.1", "622.5", "35.3"),
    ("MEND", "75.3", "96.8", "51.2", "53.8", "99.2", "620.4", "32.2"),
    ("ROME", "81.7", "99.9", "99.0", "79.4", "48.5", "620.5", "42.7"),
    ("PMET*", "83.5", "99.9", "98.7", "79.6", "55.6", "620.9", "43.0"),
    ("RETS", "80.7", "100.0", "74.2", "65.5", "83.3", "542.4", "29.2"),
    ("- w/o SC", "74.1", "100.0", "82.0", "23.7", "90.7", "618.1", "34.9"),
)
RETS_FIG5 = ("Figure 5 (50 prompts): the performance of RETS vibrates before middle layers and becomes stable after "
             "middle-late layers; RETS editing on middle-late layers shows more balanced performance than editing "
             "on any layer at the last-subject token (ROME).")
# Seed 001, Tables 1-2 (Reliability / Generality, entity and relation knowledge).
SEED001_HEADER = ("Method", "Entity Reliability", "Entity Generality", "Relation Reliability", "Relation Generality")
SEED001_TABLE1 = (  # relation edits
    ("GPT-2 XL FT", "23.92", "25.44", "98.79", "79.03"),
    ("GPT-2 XL KN", "22.53", "24.61", "97.52", "76.16"),
    ("GPT-2 XL MEND", "22.33", "24.63", "100.0", "83.24"),
    ("GPT-2 XL ROME", "27.92", "28.12", "99.99", "84.47"),
    ("GPT-2 XL MEMIT", "24.15", "24.63", "91.36", "76.24"),
    ("GPT-J MEND", "15.51", "17.99", "100.0", "81.52"),
    ("GPT-J ROME", "30.95", "31.87", "100.0", "95.97"),
    ("GPT-J MEMIT", "18.92", "19.37", "100.0", "88.50"),
)
SEED001_TABLE2 = (  # entity edits
    ("GPT-2 XL ROME", "99.93", "96.6", "96.12", "74.46"),
    ("GPT-2 XL MEMIT", "93.88", "79.6", "97.28", "76.01"),
    ("GPT-J ROME", "99.99", "99.49", "91.37", "74.52"),
    ("GPT-J MEMIT", "99.87", "95.08", "92.36", "74.20"),
)
SEED001_FIG2 = ("Figure 2 (1207 facts, relation corrupted): high AIE in the last layers of the final token; high AIE "
                "in the earlier layers for the corrupted relation tokens; pronounced AIE in the middle attention "
                "layers of the last corrupted token; relation-localised knowledge is associated with higher MLP "
                "layers and mid-to-upper attention layers, unlike entity localisation (lower MLP layers).")
SEED001_FIG3 = ("Figure 3 (causal effects isolating modules): the knowledge located through the relation is strongly "
                "correlated with both MLP layers and attention layers.")
# Seed 003 (PMET).
PMET_FIG2 = ("Figure 2 (GPT-J, 1209 facts): in the first 15 layers both MHSA and FFN change frequently; after the "
             "15th layer the FFN's states change more slowly, stabilising, while the MHSA's continue to change frequently.")
PMET_TABLE1_HEADER = ("Editor", "Score", "Efficacy", "Generalization", "Specificity", "Fluency", "Consistency")
PMET_TABLE1_ROWS = (
    ("GPT-J (6B)", "22.4", "15.2 (0.7)", "17.7 (0.6)", "83.5 (0.5)", "622.4 (0.3)", "29.4 (0.2)"),
    ("MEMIT", "85.8", "98.9 (0.2)", "88.6 (0.5)", "73.7 (0.5)", "619.9 (0.3)", "40.1 (0.2)"),
    ("PMET", "86.2", "99.5 (0.1)", "92.8 (0.4)", "71.4 (0.5)", "620.0 (0.3)", "40.6 (0.2)"),
    ("GPT-NeoX (20B)", "23.7", "16.8 (1.9)", "18.3 (1.7)", "81.6 (1.3)", "620.4 (0.6)", "29.3 (0.5)"),
    ("MEMIT", "82.0", "97.2 (0.8)", "82.2 (1.6)", "70.8 (1.4)", "606.4 (1.0)", "36.9 (0.6)"),
    ("PMET", "84.3", "98.4 (0.2)", "89.4 (0.5)", "70.3 (0.5)", "598.1 (0.6)", "38.9 (0.2)"),
)
PMET_TABLE3_ROWS = (  # the 1K block of Table 3 (GPT-J)
    ("GPT-J", "22.4", "15.2", "17.7", "83.5", "622.4", "29.4"),
    ("PMET", "91.1", "99.8", "96.1", "80.1", "622.2", "41.7"),
    ("w/o δ_i^a", "90.8 (↓0.3)", "99.6 (↓0.2)", "96.6 (↑0.5)", "79.1 (↓1.0)", "622.4 (↑0.2)", "42.2 (↑0.5)"),
    ("w/ W_O MHSA", "90.8 (↓0.3)", "99.8 (→)", "96.8 (↑0.7)", "78.9 (↓1.2)", "622.0 (↓0.2)", "42.1 (↑0.4)"),
    ("Even spread", "88.9 (↓2.2)", "99.6 (↓0.2)", "86.7 (↓9.9)", "82.2 (↑3.1)", "622.3 (↓0.1)", "39.1 (↓3.1)"),
)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
