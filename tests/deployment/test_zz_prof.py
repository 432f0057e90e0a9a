from tests.deployment.test_deploy_ssh import *  # noqa
def test_prof(host_factory, make_target, models):
    import time
    v1, v2 = models.make(1), models.make(2)
    t=time.monotonic(); host = host_factory(v1); print("host setup", time.monotonic()-t)
    target = make_target([host])
    t=time.monotonic()
    outcome = deploy(target, v2, "dep-1")
    print("deploy", time.monotonic()-t)
    for r in outcome.steps: print(r.step, round(r.seconds,3), r.detail[:80])
    assert 0
