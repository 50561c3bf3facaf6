"""``kube.is_subset``: when a live object already matches a rendered child (so no write is sent)."""

from __future__ import annotations

from typing import Any

import pytest

from spiral_operator.kube import is_subset

LIVE: dict[str, Any] = {
    "metadata": {"name": "x", "labels": {"a": "1"}, "resourceVersion": "7"},
    "spec": {"replicas": 1, "ports": [{"name": "grpc", "port": 50051, "protocol": "TCP"}], "ratio": 1.0},
}


@pytest.mark.parametrize(
    ("desired", "want"),
    [
        ({"metadata": {"name": "x"}}, True),  # server-added fields are ignored
        ({"spec": {"replicas": 1.0}}, True),  # a number the server spells differently
        ({"spec": {"ratio": 1}}, True),
        ({"spec": {"replicas": 2}}, False),
        ({"metadata": {"labels": {"b": "2"}}}, False),  # a key the live object lacks
        ({"spec": {"ports": [{"name": "grpc"}]}}, True),  # list items compared as subsets too
        ({"spec": {"ports": []}}, False),  # ... but the lists must be equally long
        ({"spec": {"ports": {"name": "grpc"}}}, False),  # a map where the live object has a list
        ({"metadata": {"name": "y"}}, False),
    ],
    ids=["defaults", "int-vs-float", "float-vs-int", "changed-number", "missing-key", "list-items",
         "list-length", "type-change", "changed-string"],
)
def test_is_subset_matches_only_when_every_desired_field_is_live(desired: dict[str, Any], want: bool) -> None:
    assert is_subset(desired, LIVE) is want
