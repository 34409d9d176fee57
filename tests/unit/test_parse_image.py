"""parse_image (drivers/images.py) follows Fn's ParseImage, keeping digests as the tag."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from drivers.errors import InvalidInputError
from drivers.images import ImageRef, parse_image

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", ("", "library/busybox", "latest")),
        ("busybox:1.36", ("", "library/busybox", "1.36")),
        ("fnproject/hello", ("", "fnproject/hello", "latest")),
        ("fnproject/hello:0.0.1", ("", "fnproject/hello", "0.0.1")),
        ("a/b/c:t", ("", "a/b/c", "t")),
        ("docker.io/library/busybox", ("docker.io", "library/busybox", "latest")),
        ("quay.io/org/app:v1", ("quay.io", "org/app", "v1")),
        # A registry-qualified single name gets no library/ prefix (Fn: private registries
        # cannot support that shortcut).
        ("localhost/app", ("localhost", "app", "latest")),
        ("localhost:5000/app:dev", ("localhost:5000", "app", "dev")),
        ("registry:5000/app", ("registry:5000", "app", "latest")),
        ("127.0.0.1:5000/a/b:t", ("127.0.0.1:5000", "a/b", "t")),
        ("Registry.Example.com/app", ("Registry.Example.com", "app", "latest")),
        # No slash, so "localhost" is the repository and 5000 its tag, as in Fn and Docker.
        ("localhost:5000", ("", "library/localhost", "5000")),
        ("localhost", ("", "library/localhost", "latest")),
        ("my.host", ("", "library/my.host", "latest")),
        (f"busybox@{DIGEST}", ("", "library/busybox", DIGEST)),
        (f"busybox:1.36@{DIGEST}", ("", "library/busybox", DIGEST)),
        (f"localhost:5000/app@{DIGEST}", ("localhost:5000", "app", DIGEST)),
        ("my.reg:443/ns/app:1.0-rc_1", ("my.reg:443", "ns/app", "1.0-rc_1")),
        ("app:UPPER_tag", ("", "library/app", "UPPER_tag")),
    ],
)
def test_table(ref: str, expected: tuple[str, str, str]) -> None:
    assert parse_image(ref) == ImageRef(*expected)


@pytest.mark.parametrize(
    "ref",
    [
        # empty or whitespace
        "",
        " ",
        "\n",
        " busybox",
        "busybox ",
        "busy box",
        "busybox:\t1",
        # upper case in the repository
        "Busybox",
        "fnproject/Hello",
        "reg.io/App:1",
        # empty tag
        "busybox:",
        "reg.io/app:",
        # empty path components (the registry's host or port included)
        "/busybox",
        "busybox/",
        "a//b",
        "reg.io/",
        "reg.io//app",
        ":tag",
        ":5000/app",
        "host:/app",
        # bad digests
        "busybox@",
        "busybox@sha256",
        "busybox@sha256:",
        "busybox@:0123",
        f"@{DIGEST}",
    ],
)
def test_invalid_references(ref: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_image(ref)


# Docker's reference grammar, kept to what Fn's rules read unambiguously. Built from small
# pieces rather than st.from_regex, which is slow for the long tag and digest patterns.
LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
ALNUM = LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SEPARATORS = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    """``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*``"""
    runs = draw(st.lists(st.text(LOWER_ALNUM, min_size=1, max_size=5), min_size=1, max_size=3))
    return runs[0] + "".join(draw(SEPARATORS) + run for run in runs[1:])


# A first path component that Fn would not take for a registry.
PLAIN_COMPONENT = path_components().filter(lambda c: "." not in c and c != "localhost")


@st.composite
def labels(draw: st.DrawFn) -> str:
    """A host name label: ``[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?``"""
    head = draw(st.sampled_from(ALNUM))
    if draw(st.booleans()):
        return head
    return head + draw(st.text(ALNUM + "-", max_size=6)) + draw(st.sampled_from(ALNUM))


PORT = st.integers(1, 65535).map(lambda port: f":{port}")
REGISTRY = st.one_of(
    st.tuples(st.just("localhost"), st.just("") | PORT),
    st.tuples(st.lists(labels(), min_size=2, max_size=4).map(".".join), st.just("") | PORT),
    st.tuples(labels(), PORT),
).map("".join)
TAG = st.builds(str.__add__, st.sampled_from(ALNUM + "_"), st.text(ALNUM + "_.-", max_size=20))
DIGESTS = st.binary(min_size=32, max_size=32).map(lambda raw: f"sha256:{raw.hex()}")


@dataclass(frozen=True)
class Reference:
    """A valid reference's pieces, as written."""

    registry: str
    path: tuple[str, ...]
    tag: str | None
    digest: str | None

    def text(self, path: str | None = None) -> str:
        """The reference as written; ``path`` replaces the repository path."""
        name = "/".join(self.path) if path is None else path
        ref = f"{self.registry}/{name}" if self.registry else name
        ref += f":{self.tag}" if self.tag is not None else ""
        return ref + (f"@{self.digest}" if self.digest is not None else "")

    def expected(self) -> ImageRef:
        """The parts Fn's rules give for it."""
        path = "/".join(self.path)
        repo = f"library/{path}" if not self.registry and len(self.path) == 1 else path
        return ImageRef(self.registry, repo, self.digest or self.tag or "latest")


@st.composite
def references(draw: st.DrawFn) -> Reference:
    registry = draw(st.just("") | REGISTRY)
    first = draw(path_components() if registry else PLAIN_COMPONENT)
    rest = draw(st.lists(path_components(), max_size=2))
    return Reference(registry, (first, *rest), draw(st.none() | TAG), draw(st.none() | DIGESTS))


def rebuild(parts: ImageRef) -> str:
    """The reference that names ``parts`` (a digest is the only tag with a colon)."""
    name = f"{parts.registry}/{parts.repo}" if parts.registry else parts.repo
    return f"{name}@{parts.tag}" if ":" in parts.tag else f"{name}:{parts.tag}"


@given(references())
def test_valid_references_split_by_fn_rules(ref: Reference) -> None:
    assert parse_image(ref.text()) == ref.expected()


@given(references())
def test_round_trip(ref: Reference) -> None:
    parts = parse_image(ref.text())
    assert parse_image(rebuild(parts)) == parts


@given(st.text(alphabet=st.sampled_from("aB1./:@-_ \tsha256"), max_size=30) | st.text(max_size=20))
@example("localhost:5000")
@example("a:b:c")
def test_any_text_is_refused_cleanly_or_round_trips(ref: str) -> None:
    """Any string either raises InvalidInputError or gives parts that round-trip."""
    try:
        parts = parse_image(ref)
    except InvalidInputError:
        return
    assert parts.repo and parts.tag
    assert parts.repo == parts.repo.lower()
    assert parse_image(rebuild(parts)) == parts


@given(references(), st.integers(0, 1000), st.sampled_from(" \t\n\r"))
def test_whitespace_anywhere_is_invalid(ref: Reference, at: int, space: str) -> None:
    text = ref.text()
    at %= len(text) + 1
    with pytest.raises(InvalidInputError):
        parse_image(text[:at] + space + text[at:])


@given(references(), st.data())
def test_upper_case_in_the_repository_is_invalid(ref: Reference, data: st.DataObject) -> None:
    path = "/".join(ref.path)
    letters = [i for i, char in enumerate(path) if char.isalpha()]
    if not letters:
        return
    i = data.draw(st.sampled_from(letters))
    with pytest.raises(InvalidInputError):
        parse_image(ref.text(path=path[:i] + path[i].upper() + path[i + 1 :]))
