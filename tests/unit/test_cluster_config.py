"""
C{[cluster]}: the node's name.
"""

from __future__ import annotations

import socket

from .test_config import ConfigTestCase, setting


class ClusterSectionTests(ConfigTestCase):
    def test_default_is_host_name(self) -> None:
        self.assertEqual(self.load().cluster.node_name, socket.gethostname())

    def test_node_name(self) -> None:
        self.assertEqual(self.load(setting("cluster", "node_name", "acme-2")).cluster.node_name, "acme-2")

    def test_bad_node_name(self) -> None:
        self.assertProblem(setting("cluster", "node_name", "a b"), "cluster.node_name", "'a b'", "letters, digits")
        self.assertProblem(setting("cluster", "node_name", ""), "cluster.node_name", "must not be empty")
        self.assertProblem(setting("cluster", "node_name", 3), "cluster.node_name")

    def test_unknown_key(self) -> None:
        self.assertProblem(setting("cluster", "name", "x"), "cluster.name", "node_name")
