import pytest

from hfkit.errors import HfkitError
from hfkit.recipe import load_recipe, parse_overrides


def test_shipped_recipe_loads_with_overrides():
    r = load_recipe("clm_pretrain", ["max_steps=7", "output_dir=/tmp/x", "learning_rate=3e-4",
                                                   "model.architecture=llama", "data.sources.0.weight=2"])
    assert r.training["max_steps"] == 7
    assert r.training["output_dir"] == "/tmp/x"
    assert r.training["learning_rate"] == pytest.approx(3e-4)  # YAML 1.1 reads 3e-4 as a string
    assert isinstance(r.training["learning_rate"], float)
    assert r.model.architecture == "llama"
    assert r.data.sources[0].weight == 2.0


def test_override_values_parse_as_yaml():
    assert parse_overrides(["a=1", "b=true", "c=[x, y]", "d=hello world", "e="]) == {
        "a": 1, "b": True, "c": ["x", "y"], "d": "hello world", "e": ""}


@pytest.mark.parametrize("override, message", [
    ("model.hiden_size=3", "unknown recipe key 'model.hiden_size'"),
    ("training.learning_rat=1", "unknown recipe key 'training.learning_rat'"),
    ("max_steps=ten", "recipe key 'training.max_steps' expects int, got str 'ten'"),
    ("model.architecture=gpt5", "recipe key 'model.architecture' expects one of 'gpt2', 'llama'"),
    ("model.dropout=yes", "recipe key 'model.dropout' expects float"),
    ("data.block_size=1024", "exceeds the model's maximum positions"),
    ("data.sources.0.kind=text", "recipe key 'data.sources.0.path' is required"),
    ("data.sources.3.path=x", "'3' is not a valid index"),
    ("noequals", "is not of the form key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(HfkitError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_recipe("clm_pretrain", [override])


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  hidden_size: 4\n   num_layers: [\n")
    with pytest.raises(HfkitError, match=r"bad.yaml: invalid YAML at line \d"):
        load_recipe(p)


def test_missing_recipe_and_data_file(tmp_path):
    with pytest.raises(HfkitError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(HfkitError, match="no such file or folder: /no/such.jsonl"):
        load_recipe("clm_pretrain", ["data.sources.0.kind=json", "data.sources.0.path=/no/such.jsonl"])
