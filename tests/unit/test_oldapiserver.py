import base64

from vkpy.testing.oldapiserver import ETCD_PREFIX, prefix_range


def decoded(prefix: str) -> tuple[str, str]:
    span = prefix_range(prefix)
    return base64.b64decode(span["key"]).decode(), base64.b64decode(span["range_end"]).decode()


def test_the_range_holds_the_old_apiservers_keys_and_none_of_the_main_ones():
    start, end = decoded(ETCD_PREFIX)
    inside = f"{ETCD_PREFIX}/pods/default/web"
    assert start <= inside < end
    for outside in ("/registry/pods/default/web", f"{ETCD_PREFIX}-other/x", "compact_rev_key"):
        assert not start <= outside < end


def test_a_trailing_slash_changes_nothing():
    assert decoded("/p/") == decoded("/p") == ("/p/", "/p0")
