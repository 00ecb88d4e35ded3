"""Execute a subscription event once for every subscriber who asked the same thing.

A chat message reaches every member subscribed to its room. graphql-core executes the
subscription's selection once per event *per subscriber*, and on a busy room that work,
repeated with the same inputs, is most of the gateway's cost per delivered frame. When
the payload object is shared (the pub/sub hub decodes each publication once and hands the
same object to every local subscriber) and the selection reads only fields whose values
do not depend on who is looking, the first subscriber's result serves the others.

A payload opts in by carrying an `execution_memo` dict (None: never shared); the results
computed for it, by operation, live and die with the event. What may be shared is
declared field by field in `SHARED_FIELDS`: a field not listed there (a new one, or one
like `User.emailVerified` that answers differently per viewer) makes the whole selection
per subscriber again. Results with errors are never shared.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)

# GraphQL type → the fields whose values are the same for every viewer of the same event.
SHARED_FIELDS: Mapping[str, frozenset[str]] = {
    # A room's subscribers all receive the same messages (membership is checked when
    # they subscribe; a member who leaves stops receiving).
    "Subscription": frozenset({"messageAdded"}),
    "Message": frozenset({"id", "roomId", "text", "seq", "clientMessageId", "createdAt", "sender"}),
    # Public profile fields and counts; not email, roles, emailVerified, viewerFollows…
    "User": frozenset(
        {
            "id",
            "username",
            "displayName",
            "bio",
            "avatarUrl",
            "createdAt",
            "followerCount",
            "followingCount",
        }
    ),
}


@dataclass
class SharingStats:
    """This replica's shared subscription events (exported in `nova_gateway_events_total`):
    `executed` once each per operation, `reused` by the other subscribers."""

    executed: int = 0
    reused: int = 0


STATS = SharingStats()

# Directives that only select fields (by variables, which are part of the key).
_SELECTING_DIRECTIVES = frozenset({"include", "skip"})


def sharing_key(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> Hashable | None:
    """What identifies this operation's result for a shared event, or None when the
    selection may differ between viewers (then each subscriber executes it)."""
    root = schema.subscription_type
    if root is None or operation.loc is None:
        return None
    if not _viewer_independent(schema, root, operation.selection_set, fragments, set()):
        return None
    try:
        arguments = json.dumps(variables, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return None
    source = operation.loc.source.body[operation.loc.start : operation.loc.end]
    return (source, arguments)


def _viewer_independent(
    schema: GraphQLSchema,
    parent: GraphQLNamedType,
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    spread: set[str],
) -> bool:
    if not isinstance(parent, GraphQLObjectType):
        return False  # interfaces and unions: what runs depends on the concrete type
    allowed = SHARED_FIELDS.get(parent.name, frozenset())
    for selection in selection_set.selections:
        if any(d.name.value not in _SELECTING_DIRECTIVES for d in selection.directives or ()):
            return False
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name == "__typename":
                continue
            if name not in allowed or name not in parent.fields:
                return False
            if selection.selection_set is not None and not _viewer_independent(
                schema,
                get_named_type(parent.fields[name].type),
                selection.selection_set,
                fragments,
                spread,
            ):
                return False
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = schema.get_type(condition.name.value) if condition else parent
            if target is not parent:
                return False
            if not _viewer_independent(schema, parent, selection.selection_set, fragments, spread):
                return False
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if (
                fragment is None
                or schema.get_type(fragment.type_condition.name.value) is not parent
            ):
                return False
            if name in spread:
                continue
            spread.add(name)
            if not _viewer_independent(schema, parent, fragment.selection_set, fragments, spread):
                return False
        else:
            return False
    return True
