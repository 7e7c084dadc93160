"""Smoothing, threshold, refractory period and re-arming."""

import pytest

from kwsd.detector import Detector, DetectorSettings


def run(scores, **kw):
    d = Detector(DetectorSettings(**kw))
    return [det for i, s in enumerate(scores) if (det := d.update(round(0.1 * (i + 10), 3), s))]


def test_one_spoken_word_fires_once():
    fired = run([0.0, 0.9, 0.95, 0.97, 0.96, 0.9, 0.1, 0.0], threshold=0.8, smoothing=2)
    assert [d.time for d in fired] == [1.2]
    assert fired[0].score == pytest.approx((0.9 + 0.95) / 2)


def test_smoothing_ignores_a_single_spike():
    assert run([0.0, 0.0, 0.99, 0.0, 0.0], threshold=0.5, smoothing=3) == []
    assert len(run([0.0, 0.0, 0.99, 0.0, 0.0], threshold=0.5, smoothing=1)) == 1


def test_refractory_period_and_rearm():
    # two words 0.5 s apart with a dip between: the second is inside the refractory period
    near = [0.9, 0.9, 0.0, 0.0, 0.0, 0.9, 0.9]
    assert len(run(near, threshold=0.5, smoothing=1, refractory_s=1.0)) == 1
    assert len(run(near, threshold=0.5, smoothing=1, refractory_s=0.2)) == 2
    # a score that never dips does not fire again after the refractory period
    assert len(run([0.9] * 40, threshold=0.5, smoothing=1, refractory_s=1.0)) == 1


@pytest.mark.parametrize("kw", [dict(threshold=0), dict(threshold=1.5), dict(smoothing=0),
                                dict(refractory_s=-1), dict(hop_s=0)])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        DetectorSettings(**kw)
