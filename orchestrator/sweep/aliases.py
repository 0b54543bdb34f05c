"""Bound the size of a YAML document after alias expansion ("billion laughs").

A YAML alias is a reference: composing a 600-byte file of nested aliases is cheap, but every
consumer that walks the tree (the line map, validation, grid expansion) sees each alias expanded,
so such a file took 41 s and 3 GB before failing. A sweep file is a few hundred nodes; this
counts the expanded nodes of the composed tree and stops at a bound long before it hurts.
"""
from __future__ import annotations

import yaml

# A real sweep has hundreds of nodes; this is far above any of them and walked in milliseconds.
MAX_EXPANDED_NODES = 100_000


def expanded_size_exceeds(root: yaml.Node, bound: int = MAX_EXPANDED_NODES) -> bool:
    """True when the tree under `root`, aliases expanded, has more than `bound` nodes.

    Walks the tree iteratively and stops as soon as the count passes `bound`, so the cost is
    at most `bound` steps whatever the file's expansion factor.
    """
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > bound:
            return True
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return False
