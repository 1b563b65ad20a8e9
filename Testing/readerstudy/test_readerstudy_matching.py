"""Reference values G and H: lesion matching and size thresholds."""

from neuroshift.readerstudy.answers import Lesion
from neuroshift.readerstudy.matching import MatchRule, count_at_threshold, match_lesions


def les(x, long=10.0, short=6.0, y=0.0, lid="L"):
    return Lesion(lid, (x, y, 0.0), long, short)


def test_G_radius_is_quarter_of_long_plus_short_strict():
    ref = [les(0.0)]
    assert match_lesions(ref, [les(3.9, 2.0, 1.0)]).ref_detected == (True,)
    assert match_lesions(ref, [les(4.0, 2.0, 1.0)]).ref_detected == (False,)
    assert match_lesions(ref, [les(4.0, 2.0, 1.0)], MatchRule(strict=False)).ref_detected == (True,)


def test_G_whose_axes_are_configurable():
    ref = [les(0.0, 10, 6)]          # radius 4
    det = [les(2.5, 4, 4)]           # own radius 2
    assert match_lesions(ref, det, MatchRule(axes="reference")).ref_detected == (True,)
    assert match_lesions(ref, det, MatchRule(axes="detection")).ref_detected == (False,)
    assert match_lesions(ref, det, MatchRule(axes="mean")).ref_detected == (True,)    # radius (4 + 2) / 2 = 3
    det2 = [les(3.1, 4, 4)]
    assert match_lesions(ref, det2, MatchRule(axes="mean")).ref_detected == (False,)


def test_G_two_detections_one_reference_is_one_tp_one_fp():
    ref = [les(0.0)]
    dets = [les(1.0, lid="a"), les(-2.0, lid="b")]
    m = match_lesions(ref, dets)
    assert m.ref_detected == (True,)
    assert sum(m.det_matched) == 1 and m.det_matched[0]  # the closer one
    c = count_at_threshold(ref, dets, m, 0.0)
    assert (c["tp"], c["fp"], c["fn"]) == (1, 1, 0)
    many = match_lesions(ref, dets, MatchRule(assignment="none"))
    assert sum(many.det_matched) == 2


def test_hungarian_maximises_pairs_where_greedy_does_not():
    # d0 is closest to r0 but is also the only detection near r1
    refs = [les(0.0, lid="r0"), les(3.5, lid="r1")]
    dets = [les(1.0, lid="d0"), les(-2.5, lid="d1")]
    h = match_lesions(refs, dets)
    g = match_lesions(refs, dets, MatchRule(assignment="greedy"))
    assert sum(h.ref_detected) == 2
    assert sum(g.ref_detected) == 1


def test_H_reference_counts_by_threshold():
    refs = [les(100.0 * i, long=L, short=1.0) for i, L in enumerate([2.6, 5.0, 7.4, 10.0, 14.0])]
    m = match_lesions(refs, [])
    counts = [count_at_threshold(refs, [], m, t)["n_ref"] for t in (0, 2.5, 5, 7.5, 10)]
    assert counts == [5, 5, 4, 2, 2]


def test_tp_by_reference_size_fp_by_own_size():
    refs = [les(0.0, long=12.0, short=8.0)]
    dets = [les(0.5, long=4.0, short=3.0), les(200.0, long=6.0, short=3.0)]
    m = match_lesions(refs, dets)
    at10 = count_at_threshold(refs, dets, m, 10.0)
    assert at10["tp"] == 1          # the small detection counts: the reference lesion is 12 mm
    assert at10["fp"] == 0          # the 6 mm false positive is below 10 mm
    assert count_at_threshold(refs, dets, m, 5.0)["fp"] == 1
