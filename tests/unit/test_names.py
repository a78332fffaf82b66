"""
Tests for the DNS-name steps of L{acme_appliance.core}: the reasons
L{InvalidName} carries, so that callers can word problems their own way.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import InvalidName, NameProblem, is_label, normalise_name, prepare_name


class NameProblemTests(SynchronousTestCase):
    def problem(self, name: str) -> NameProblem | None:
        error = self.assertRaises(InvalidName, normalise_name, name)
        return error.problem

    def test_reasons(self) -> None:
        self.assertEqual(self.problem("bücher.example"), NameProblem.NOT_ASCII)
        self.assertEqual(self.problem("."), NameProblem.EMPTY)
        self.assertEqual(self.problem("a." * 127 + "example"), NameProblem.TOO_LONG)
        self.assertEqual(self.problem("*.com"), NameProblem.SHORT_WILDCARD)
        self.assertEqual(self.problem("-a.example"), NameProblem.BAD_LABEL)
        self.assertEqual(self.problem("localhost"), NameProblem.NOT_QUALIFIED)

    def test_messages_unchanged(self) -> None:
        self.assertEqual(str(self.assertRaises(InvalidName, normalise_name, ".")), "empty name")
        self.assertEqual(
            str(self.assertRaises(InvalidName, normalise_name, "-a.example")),
            "'-a.example': label '-a' is not a valid DNS label",
        )

    def test_prepare(self) -> None:
        """
        L{prepare_name} lower-cases, strips one trailing dot and checks
        only the text, not the labels.
        """
        self.assertEqual(prepare_name("WWW.Example.COM."), "www.example.com")
        self.assertEqual(prepare_name("-a..b"), "-a..b")

    def test_is_label(self) -> None:
        self.assertTrue(is_label("xn--bcher-kva"))
        self.assertFalse(is_label("-a"))
        self.assertFalse(is_label("a" * 64))
        self.assertFalse(is_label(""))
