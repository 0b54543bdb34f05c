"""Bound the size and depth of a YAML document after alias expansion ("billion laughs").

A YAML alias is a reference: composing a 600-byte file of nested aliases is cheap, but every
consumer that walks the tree (the line map, validation, grid expansion) sees each alias expanded,
so such a file took 41 s and 3 GB before failing. A chain of aliases, each one level inside the
last, nests deeper than the file's own text (and than Python's recursion limit). A sweep file is a
few hundred nodes, four levels deep; this walks the composed tree, aliases expanded, and stops at
a bound long before it hurts.
"""
from __future__ import annotations

import yaml

# A real sweep has hundreds of nodes; this is far above any of them and walked in milliseconds.
MAX_EXPANDED_NODES = 100_000


def expansion_problem(root: yaml.Node, max_nodes: int = MAX_EXPANDED_NODES, max_depth: int = 16) -> str | None:
    """Why the tree under `root`, aliases expanded, is too big (more than `max_nodes` nodes) or too
    deep (more than `max_depth` collections inside each other), or None.

    Walks the tree iteratively and stops as soon as a bound is passed, so the cost is at most
    `max_nodes` steps whatever the file's expansion factor (a self-referring alias included).
    """
    count, stack, aliased = 0, [(root, 1)], False
    seen: set[int] = set()
    while stack:
        node, depth = stack.pop()
        count += 1
        aliased = aliased or id(node) in seen  # a node met twice is an alias' target
        seen.add(id(node))
        if count > max_nodes:
            if not aliased:
                return f"more than {max_nodes:,} values; a sweep has a few hundred"
            return (f"YAML aliases expand to more than {max_nodes:,} nodes; a sweep is a few hundred"
                    " (write the values out, or use fewer nested aliases)")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and depth > max_depth:
            return f"nested more than {max_depth} levels deep once YAML aliases are expanded; a sweep has at most 4"
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend(((key, depth + 1), (value, depth + 1)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)
    return None

