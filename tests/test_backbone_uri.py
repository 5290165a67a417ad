"""BackboneURI: a backbone URI parsed once; str() gives back the very string rows and hashes keep."""

import pytest

from bench_tasks.contracts import BackboneURI, uri_parts, uri_scheme

ROUND_TRIP = [
    ("random:vit_tiny", "random", "vit_tiny", "vit_tiny", None),
    ("supervised:vit_small@112/16/d6", "supervised", "vit_small@112/16/d6", "vit_small@112/16/d6", None),
    ("floor:majority", "floor", "majority", "majority", None),
    ("timm:vit_small_patch16_224", "timm", "vit_small_patch16_224", "vit_small_patch16_224", None),
    ("timm:vit_small_patch16_224:w/x.pth", "timm", "vit_small_patch16_224:w/x.pth", "vit_small_patch16_224",
     "w/x.pth"),
    ("paco_fr:runs/cpu/paco/encoder.safetensors", "paco_fr", "runs/cpu/paco/encoder.safetensors",
     "runs/cpu/paco/encoder.safetensors", "runs/cpu/paco/encoder.safetensors"),
    ("farl:C:/weights/farl.pth", "farl", "C:/weights/farl.pth", "C", "C:/weights/farl.pth"),
]


@pytest.mark.parametrize("text,scheme,spec,name,file", ROUND_TRIP)
def test_parse_round_trip(text, scheme, spec, name, file):
    uri = BackboneURI.parse(text)
    assert (uri.scheme, uri.spec, uri.name, uri.file) == (scheme, spec, name, file)
    assert str(uri) == text
    assert BackboneURI.parse(uri) is uri
    assert BackboneURI.parse(str(uri)) == uri
    assert uri_scheme(text) == scheme and uri_parts(text) == (scheme, spec)


@pytest.mark.parametrize("bad", ["", "random", "random:", "vit_tiny"])
def test_bad_uri_names_it_and_the_form(bad):
    with pytest.raises(ValueError) as err:
        BackboneURI.parse(bad)
    assert repr(bad) in str(err.value) and "expected scheme:spec" in str(err.value)


def test_tolerant_helpers_and_with_scheme():
    assert uri_parts("abc") == ("abc", "") and uri_scheme("") == ""
    assert str(BackboneURI.parse("random:vit_tiny@112/16").with_scheme("supervised")) == "supervised:vit_tiny@112/16"


def test_kind_predicates_parsed_and_read():
    assert BackboneURI.parse("floor:input-free").is_floor and not BackboneURI.parse("floor:input-free").is_ceiling
    assert BackboneURI.parse("supervised:vit_tiny").is_ceiling and not BackboneURI.parse("supervised:vit_tiny").is_floor
    assert not any(u.is_floor or u.is_ceiling for u in map(BackboneURI.parse, ("random:vit_tiny", "paco_fr:a/b.pt")))
    # read: any string, never raises (rows of old or foreign files); parse is the strict form
    assert BackboneURI.read("floor:") == BackboneURI("floor", "") and BackboneURI.read("floor:").is_floor
    assert BackboneURI.read("abc") == BackboneURI("abc", "") and not BackboneURI.read("").is_floor
    uri = BackboneURI.parse("supervised:vit_tiny")
    assert BackboneURI.read(uri) is uri


def test_frozen():
    with pytest.raises(AttributeError):
        BackboneURI.parse("random:vit_tiny").scheme = "timm"
