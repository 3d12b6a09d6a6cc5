"""BadNets: dirty-label data poisoning with a patch trigger.

Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply
Chain", arXiv 1708.06733, 2017 (journal version IEEE Access 2019). Sec. 4 (MNIST): a fraction of
training images get a small pattern in the bottom-right corner and the attacker's label; both
all-to-one ("single target") and all-to-all (``i -> i + 1``) attacks are studied.

Deviation: any registered trigger can replace the patch (``trigger=``); the default is a 3x3 white
square one pixel from the bottom-right corner.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import ATTACKS, PoisoningAttack


@ATTACKS.register(
    "badnets", "BadNets (Gu et al. 2017): dirty-label poisoning with a patch (or any) trigger"
)
@dataclass
class BadNets(PoisoningAttack):
    """Gu et al. 2017 BadNets dirty-label poisoning; all-to-one, all-to-all or source-specific.

    Options (shared by every poisoning attack): ``trigger`` (default a 3x3 white patch), ``target``,
    ``mode``, ``rate`` or ``count``, ``sources``.
    """

    name = "badnets"
