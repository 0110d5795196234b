"""Property: whatever a spec file holds, loading and planning it either works or raises a
``SpecError``/``UsageError`` (one line per problem, exit 2); never another exception.

Specs are generated two ways: the fixture spec with values at random key paths replaced by
random YAML values (strings with control characters, numbers, lists, mappings, nulls), and
random YAML-ish text. Bounded (examples and time) so it runs in seconds in CI.
"""

from __future__ import annotations

import copy
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packager.errors import ModelpkgError, SpecError, UsageError
from packager.package import load_packages
from packager.plan import make_plan
from tests.packager.packager_fixtures import NAME, base_spec, make_repo

EXAMPLES = int(os.environ.get("MODELPKG_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(allow_nan=True),
    st.text(max_size=40), st.sampled_from(["", "fp32", "bf16", "base", "../x", "/abs", "$(id)", "a\nb", "\x00",
                                           "{{ precision }}", "{{ nope }}", "x" * 300]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*prefix, index))


PATHS = [p for p in _paths(base_spec()) if p]


def _check(repo) -> str:
    try:
        for package in load_packages(None, repo.root):
            make_plan(package, repo.root / "out")
    except (SpecError, UsageError) as exc:
        assert exc.exit_code == 2
        assert str(exc).strip(), "an error without a message"
        return "refused"
    except ModelpkgError as exc:  # e.g. a BuildError: still a message and an exit code, no crash
        assert str(exc).strip()
        return "refused"
    return "accepted"


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3), st.booleans())
def test_mutated_specs_are_handled(tmp_path_factory, changes, as_variants):
    repo = make_repo(tmp_path_factory.mktemp("fuzz") / "repo")
    data = copy.deepcopy(base_spec())
    for path, value in changes:
        target = data
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced the parent
    if as_variants:
        data.pop("name", None)
        data["variants"] = {NAME: {"precision": "fp32"}}
    (repo.root / "specs" / f"{NAME}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    _check(repo)


@FUZZ
@given(st.lists(st.sampled_from(list("ab:-[]{}&*!|>'\"#\n \t%@`?,\x00\x85é") + ["name: x\n", "- ", "&a ", "*a"]),
                max_size=80).map("".join))
def test_arbitrary_text_is_handled(tmp_path_factory, text):
    repo = make_repo(tmp_path_factory.mktemp("fuzz") / "repo")
    (repo.root / "specs" / f"{NAME}.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
    _check(repo)
