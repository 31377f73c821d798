"""Stop words of the reference R-Specificity rule (``r_spec_rule="reference"``).

What it is meant to match: the word list the RETS authors' ``evaluate_rs.py`` uses
to skip tokens when it picks o2 among the unedited model's top-20 next tokens. That
list is a general-purpose English stop-word list: lower-case function words
(articles, pronouns, prepositions, conjunctions, auxiliaries and their contractions
with and without the apostrophe, common adverbs and quantifiers), the single letters
a-z, a few symbols (``* / + - = --``, ``'s``) and the ``<s>``/``</s>`` markers.
Matching is exact and case-sensitive on the token text with spaces stripped, so
"The", "," and "\\n" are *not* stop words (they can become o2, as in the reference).

This list is our own assembly of such a standard function-word list, not a copy of
the authors' file; tokens on which the two lists differ can give a different o2.
"""

from __future__ import annotations

import string

_FUNCTION_WORDS = """
a about above across after afterwards again against all almost alone along already also although always am among
amongst an and another any anybody anyhow anyone anything anyway anyways anywhere apart are around as aside at
be became because become becomes been before beforehand behind being below beside besides between beyond both but by
can cannot could did do does doing done down during each either else elsewhere enough etc even ever every everybody
everyone everything everywhere few for former formerly from further furthermore had has have having he hence her here
hereafter hereby herein hereupon hers herself him himself his how however i if in indeed instead into is it its itself
just least less lest let many may maybe me meanwhile might mine more moreover most mostly much must my myself namely
near nearly neither never nevertheless next no nobody none noone nor not nothing now nowhere of off often oh ok okay on
once only onto or other others otherwise ought our ours ourselves out over overall own perhaps please quite rather
really regarding same several shall she should since so some somebody somehow someone something sometime sometimes
somewhat somewhere still such than that the their theirs them themselves then thence there thereafter thereby
therefore therein thereupon these they this those though through throughout thru thus to together too toward towards
under unless until unto up upon us very via was we well were what whatever when whence whenever where whereafter
whereas whereby wherein whereupon wherever whether which while whither who whoever whole whom whose why will with
within without would yes yet you your yours yourself yourselves
according accordingly actually based believe de despite eg et got gotten hardly ie inner inward lately later latter
latterly merely next normally particularly plus probably que regardless respectively seen self selves sent sure th
thorough thoroughly took unlikely usually viz way went
"""
_CONTRACTIONS = """
ain't aren't can't couldn't didn't doesn't don't hadn't hasn't haven't he'd he'll he's here's how's i'd i'll i'm i've
isn't it's let's mightn't mustn't shan't she'd she'll she's shouldn't that's there's they'd they'll they're they've
wasn't we'd we'll we're we've weren't what's when's where's who'd who'll who's why's won't wouldn't you'd you'll
you're you've could've should've would've might've must've
"""
_SYMBOLS = ("*", "/", "+", "-", "--", "---", "=", "'s", "<s>", "</s>")


def _without_apostrophe(words: list[str]) -> list[str]:
    return [w.replace("'", "") for w in words]


_contractions = _CONTRACTIONS.split()
STOPWORDS: frozenset[str] = frozenset(
    [*_FUNCTION_WORDS.split(), *_contractions, *_without_apostrophe(_contractions), *string.ascii_lowercase, "I",
     *_SYMBOLS]
)


def is_reference_stopword(token_text: str) -> bool:
    """Whether the reference rule skips this token: a stop word or blank once spaces are stripped."""
    text = token_text.strip(" ")
    return text == "" or text in STOPWORDS
