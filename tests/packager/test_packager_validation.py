"""Every spec validation error: named file, key path, what is allowed; exit 2 from the CLI."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from packager.cli import app
from packager.errors import SpecError, UsageError
from packager.package import load_package
from packager.plan import make_plan

from tests.packager.packager_fixtures import NAME, base_spec

runner = CliRunner()


def problems(repo, data=None) -> list[str]:
    if data is not None:
        repo.write_spec(data, name=NAME)
    with pytest.raises(SpecError) as info:
        make_plan(load_package(NAME, repo.root))  # the schema, then the repository checks
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def test_fixture_spec_is_valid(repo):
    spec = make_plan(load_package(NAME, repo.root)).package.spec
    assert spec.image.dockerfile == f"dockerfiles/{NAME}.Dockerfile"
    assert spec.image.workdir == f"/workspace/{NAME}"
    assert spec.docs.output == f"docs/packages/{NAME}.md"


def test_unknown_keys_suggest_the_right_one(repo):
    data = base_spec()
    data["licence"] = data.pop("licenses")
    data["quickstart"][0]["env"]["requried"] = ["X"]
    found = problems(repo, data)
    assert any(p.startswith(f"specs/{NAME}.yaml: licence: unknown key 'licence'; did you mean 'licenses'?") for p in found), found
    assert any("quickstart[0].env.requried: unknown key 'requried'; did you mean 'required'?" in p
               and "allowed: optional, required" in p for p in found), found


def test_bad_values_name_the_allowed_ones(repo):
    data = base_spec()
    data["framework"] = "tensorflw"
    data["precision"] = ["fp32", "bf17"]
    found = problems(repo, data)
    assert any("framework: 'tensorflw' is not allowed; use one of 'tensorflow' or 'pytorch' (did you mean 'tensorflow'?)" in p
               for p in found), found
    assert any("precision[1]: 'bf17' is not allowed" in p and "'bf16'" in p for p in found), found


@pytest.mark.parametrize("bad", ["Demo", "-demo", "demo_x", "demo x"])
def test_bad_names(repo, bad):
    data = base_spec()
    data["name"] = bad
    found = problems(repo, data)
    assert any(p.startswith(f"specs/{NAME}.yaml: name: '{bad}' is not allowed; use lower-case letters") for p in found), found


def test_name_must_equal_file_name(repo):
    data = base_spec()
    data["name"] = "other-name"
    found = problems(repo, data)
    assert found == [f"specs/{NAME}.yaml: name: 'other-name' must equal the file name; rename the file to "
                     f"specs/other-name.yaml or set name: {NAME}"]


def test_missing_source(repo):
    data = base_spec()
    data["files"][1]["source"] = "models/nothere"
    found = problems(repo, data)
    assert any(p.startswith(f"specs/{NAME}.yaml: files[1].source: models/nothere does not exist") for p in found), found


def test_absolute_path(repo):
    data = base_spec()
    data["files"][0]["source"] = "/etc/passwd"
    found = problems(repo, data)
    assert f"specs/{NAME}.yaml: files[0].source: path '/etc/passwd' is absolute; write it relative to the repository root" in found


@pytest.mark.parametrize("key", ["source", "destination"])
def test_dotdot(repo, key):
    data = base_spec()
    data["files"][0][key] = "models/../../outside"
    found = problems(repo, data)
    assert any(f"files[0].{key}: path 'models/../../outside' contains '..'" in p for p in found), found


def test_symlink_leaving_the_repo(repo, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not for packages")
    os.symlink(outside, repo.root / "models/demo/link.txt")
    found = problems(repo)
    assert any(p.startswith(f"specs/{NAME}.yaml: files[1].source: models/demo/link.txt is a symlink that leaves the repository")
               for p in found), found


def test_symlinked_source_leaving_the_repo(repo, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", repo.root / "models/elsewhere")
    data = base_spec()
    data["files"][0]["source"] = "models/elsewhere"
    found = problems(repo, data)
    assert any("files[0].source: models/elsewhere is a symlink that leaves the repository" in p for p in found), found


def test_symlink_inside_the_repo_is_packed_as_a_file(repo):
    os.symlink("train.py", repo.root / "models/demo/alias.py")
    from packager.plan import plan_files

    plan = plan_files(load_package(NAME, repo.root))
    assert not plan.problems
    assert "models/demo/alias.py" in [f.path for f in plan.files]


def test_two_files_to_one_destination(repo):
    data = base_spec()
    data["files"].append({"source": "models/common/launch.py", "destination": "models/demo/train.py"})
    found = problems(repo, data)
    assert any("files[2]: writes demo-fp32-training/models/demo/train.py, which files[1] already writes" in p
               for p in found), found


def test_two_quickstarts_with_one_basename(repo):
    repo.write("quickstart/other/run_demo.sh", "#!/bin/sh\n", mode=0o755)
    data = base_spec()
    data["quickstart"].append({"script": "quickstart/other/run_demo.sh", "description": "again"})
    found = problems(repo, data)
    assert any("quickstart[1].script: writes demo-fp32-training/quickstart/run_demo.sh, which quickstart[0].script already writes"
               in p for p in found), found


def test_file_onto_reserved_readme(repo):
    data = base_spec()
    data["files"].append({"source": "models/demo/train.py", "destination": "README.md"})
    found = problems(repo, data)
    assert any("files[2]: writes demo-fp32-training/README.md, which is the generated README" in p for p in found), found


@pytest.mark.parametrize("kind, key, part", [("image", "image.parts[2]", "tensorflo"), ("docs", "docs.parts[1]", "descripton")])
def test_unknown_template_part(repo, kind, key, part):
    data = base_spec()
    data[kind]["parts"][2 if kind == "image" else 1] = part
    found = problems(repo, data)
    assert any(f"{key}: template part {part!r} does not exist" in p and "did you mean" in p and "Available:" in p
               for p in found), found


def test_missing_quickstart(repo):
    (repo.root / "quickstart/demo/run_demo.sh").unlink()
    found = problems(repo)
    assert f"specs/{NAME}.yaml: quickstart[0].script: quickstart/demo/run_demo.sh does not exist; write the script or fix the path" in found


def test_quickstart_not_executable(repo):
    (repo.root / "quickstart/demo/run_demo.sh").chmod(0o644)
    found = problems(repo)
    assert f"specs/{NAME}.yaml: quickstart[0].script: quickstart/demo/run_demo.sh is not executable; run: chmod +x quickstart/demo/run_demo.sh" in found


def test_missing_license_and_lib(repo):
    (repo.root / "quickstart/common/lib.sh").unlink()
    data = base_spec()
    data["licenses"] = ["licenses/third_party/none.txt"]
    found = problems(repo, data)
    assert any("licenses[0]: licenses/third_party/none.txt does not exist" in p for p in found), found
    assert any("quickstart/common/lib.sh (the shared quickstart library) is missing" in p for p in found), found


def test_image_part_order(repo):
    data = base_spec()
    data["image"]["parts"] = ["base", "python", "model_package", "tensorflow"]
    found = problems(repo, data)
    assert any("image.parts[3]: 'tensorflow' installs dependencies but comes after 'model_package'" in p for p in found), found
    data["image"]["parts"] = ["python", "base"]
    found = problems(repo, data)
    assert any("image.parts[0]: is 'python'; the first part must be a base part (base:" in p for p in found), found


def test_build_arg_not_declared(repo):
    data = base_spec()
    data["image"]["build_args"]["TF_PACKAG"] = "x"
    found = problems(repo, data)
    assert any("image.build_args.TF_PACKAG: no part declares ARG TF_PACKAG" in p for p in found), found


def test_proxy_in_image_env_is_refused(repo):
    data = base_spec()
    data["image"]["env"] = {"https_proxy": "http://proxy:3128"}
    found = problems(repo, data)
    assert any("image.env: https_proxy must not be set in the spec" in p for p in found), found


def test_docs_value_missing_names_the_part(repo):
    data = base_spec()
    data["docs"]["vars"] = {}
    found = problems(repo, data)
    assert any("docs.parts[3]: templates/docs/datasets.md.j2 needs a value the spec does not give" in p
               and "datasets" in p for p in found), found


def test_wrapper_without_templates(repo):
    data = base_spec()
    data["wrapper"] = {"enabled": True, "run": {"default_script": "run_demo.sh"}}
    repo.write_spec(data)
    make_plan(load_package(NAME, repo.root))  # valid with the templates
    (repo.root / "templates/wrapper/run.sh.j2").unlink()
    found = problems(repo)
    assert any("wrapper.enabled: a wrapper package needs templates/wrapper/run.sh.j2, which does not exist" in p
               for p in found), found


def test_wrapper_default_script_and_base_spec(repo):
    data = base_spec()
    data["wrapper"] = {"enabled": True, "run": {"default_script": "phase1.sh"}}
    found = problems(repo, data)
    assert any("wrapper.run.default_script: 'phase1.sh' is not one of the spec's quickstart scripts (run_demo.sh)" in p
               for p in found), found
    data["image"]["base_package"] = NAME  # itself
    found = problems(repo, data)
    assert found == [f"specs/{NAME}.yaml: image.base_package: no other package named '{NAME}'"], found


def test_duplicate_yaml_key_and_bad_yaml(repo):
    repo.write_spec_text(NAME, "name: demo-fp32-training\nname: again\n")
    found = problems(repo)
    assert len(found) == 1 and "key 'name' is written twice" in found[0]
    repo.write_spec_text(NAME, "name: [unclosed\n")
    found = problems(repo)
    assert found[0].startswith(f"specs/{NAME}.yaml: not valid YAML")


def test_all_problems_are_reported_together(repo):
    data = base_spec()
    data["files"][0]["source"] = "/abs"
    data["mode"] = "train"
    found = problems(repo, data)
    assert len(found) == 2


def test_unknown_package_name(repo):
    with pytest.raises(UsageError, match="no package named 'demo-fp32-trainig'.*did you mean 'demo-fp32-training'"):
        load_package("demo-fp32-trainig", repo.root)


def test_cli_validate_exit_2_without_traceback(repo):
    data = base_spec()
    data["files"][0]["source"] = "/etc"
    repo.write_spec(data)
    result = runner.invoke(app, ["--root", str(repo.root), "validate"])
    assert result.exit_code == 2
    assert "files[0].source: path '/etc' is absolute" in result.output
    assert "Traceback" not in result.output


def test_cli_debug_shows_traceback(repo):
    data = base_spec()
    data["files"][0]["source"] = "/etc"
    repo.write_spec(data)
    result = runner.invoke(app, ["--root", str(repo.root), "--debug", "validate"])
    assert result.exit_code == 2
    assert "Traceback" in result.output


def test_wrong_types_say_what_is_expected(repo):
    data = base_spec()
    data["files"] = {"source": "models/common"}
    data["image"]["build_args"] = {"TF_PACKAGE": 2}
    found = problems(repo, data)
    assert f"specs/{NAME}.yaml: files: must be a list, e.g. [a, b] or one '- item' per line" in found
    assert f"specs/{NAME}.yaml: image.build_args.TF_PACKAGE: must be a string, got 2; quote it in YAML" in found


# --- one line per mistake, as the user sees it through the CLI --------------------------


def test_misspelt_key_is_one_problem_not_also_a_missing_key(repo):
    data = base_spec()
    data["hardwre"] = data.pop("hardware")
    data["image"]["tga"] = data["image"].pop("tag")
    data["files"][0]["destinaton"] = data["files"][0].pop("destination")
    found = problems(repo, data)
    assert sorted(found) == [
        f"specs/{NAME}.yaml: files[0].destinaton: unknown key 'destinaton'; did you mean 'destination'? "
        "(allowed: destination, exclude, source)",
        f"specs/{NAME}.yaml: hardwre: unknown key 'hardwre'; did you mean 'hardware'? "
        "(allowed: description, docs, env_help, files, filesets, framework, hardware, image, images, licenses, mode, "
        "name, precision, quickstart, title, wrapper)",
        f"specs/{NAME}.yaml: image.tga: unknown key 'tga'; did you mean 'tag'? "
        "(allowed: base_digest, base_image, base_package, build_args, dockerfile, env, name, parts, tag, workdir)",
    ], found


def test_missing_key_without_a_look_alike_is_still_reported(repo):
    data = base_spec()
    del data["hardware"]
    data["colour"] = "blue"
    found = problems(repo, data)
    assert f"specs/{NAME}.yaml: hardware: is required but missing" in found
    assert any(p.startswith(f"specs/{NAME}.yaml: colour: unknown key 'colour'") for p in found)
    assert len(found) == 2, found


@pytest.mark.parametrize("value, message", [
    ("bfloat61", "'bfloat61' is not allowed; use one of fp32, avx-fp32, bf16, bf32"),
    (16, "must be a string, got 16; quote it in YAML"),
])
def test_wrong_precision_is_one_line(repo, value, message):
    data = base_spec()
    data["precision"] = value
    found = problems(repo, data)
    assert len(found) == 1, found  # not also "precision: must be a list"
    assert found[0].startswith(f"specs/{NAME}.yaml: precision: {message}"), found


def test_precision_the_framework_does_not_run(repo):
    data = base_spec()
    data["precision"] = ["fp32", "bf32"]  # a PyTorch precision in a TensorFlow spec
    found = problems(repo, data)
    assert found == [f"specs/{NAME}.yaml: precision bf32 is not run by the tensorflow code; "
                     "tensorflow packages support fp32, bf16"], found


def test_misspelt_image_part_is_one_problem(repo):
    data = base_spec()
    data["image"]["parts"][0] = "bse"
    found = problems(repo, data)
    assert len(found) == 1, found  # not also "the first part must be 'base'"
    assert "image.parts[0]: template part 'bse' does not exist" in found[0] and "did you mean 'base'?" in found[0]


def test_yaml_errors_are_one_line_with_the_line_number(repo):
    repo.write_spec_text(NAME, "name: demo-fp32-training\n  bad: [\n")
    found = problems(repo)
    assert found == [f"specs/{NAME}.yaml: not valid YAML: line 2, column 6: mapping values are not allowed here"]
    repo.write_spec_text(NAME, "name: demo-fp32-training\ntitle: a\ntitle: b\n")
    found = problems(repo)
    assert found == [f"specs/{NAME}.yaml: not valid YAML: line 3, column 1: key 'title' is written twice in one "
                     "mapping; keep one"]


def test_cli_typo_wrong_precision_missing_file_one_line_each(repo):
    data = base_spec()
    data["precision"] = "fp23"
    data["hardwre"] = data.pop("hardware")
    repo.write_spec(data)
    result = runner.invoke(app, ["--root", str(repo.root), "validate", NAME])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[0] == "error: 2 problems in spec:"
    assert lines[1].strip().startswith(f"specs/{NAME}.yaml: precision: 'fp23' is not allowed; use one of")
    assert "did you mean 'fp32'?" in lines[1]
    assert lines[2].strip().startswith(f"specs/{NAME}.yaml: hardwre: unknown key 'hardwre'; did you mean 'hardware'?")
    assert len(lines) == 3 and "Traceback" not in result.output
    data = base_spec()
    data["files"][1]["source"] = "models/dmo"
    repo.write_spec(data)
    result = runner.invoke(app, ["--root", str(repo.root), "validate", NAME])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[1:] == [
        f"  specs/{NAME}.yaml: files[1].source: models/dmo does not exist in the repository ({repo.root.resolve()})"
    ]


def test_unknown_name_message_reads_cleanly(repo):
    result = runner.invoke(app, ["--root", str(repo.root), "build", "demo-fp32-trainig"])
    assert result.exit_code == 2
    assert "no package named 'demo-fp32-trainig' in" in result.output
    assert "/specs; did you mean 'demo-fp32-training'? Known: demo-fp32-training (modelpkg list)" in result.output
    assert ".;" not in result.output
    result = runner.invoke(app, ["--root", str(repo.root), "build", "zzz"])
    assert result.exit_code == 2 and "/specs. Known: demo-fp32-training" in result.output
