"""The nine PaSST-S teacher members (docs/method.md, "Teachers"): the one table of them.

Plain Python (no torch): the workflow reads it when it builds the DAG (workflow/rules/common.smk), and
src/prunekd/teachers/passt.py builds and downloads the members from it.
"""

# member -> (frequency/time patch stride, release tag, checkpoint file)
MEMBERS = {
    "passt_s_swa_p16_128_ap476": (10, "v0.0.1-audioset", "passt-s-f128-p16-s10-ap.476-swa.pt"),
    "passt_s_swa_p16_128_ap4761": (10, "v0.0.2-audioset", "passt-s-f128-p16-s10-ap.4761-swa.pt"),
    "passt_s_p16_128_ap472": (10, "v0.0.2-audioset", "passt-s-f128-p16-s10-ap.472.pt"),
    "passt_s_p16_s12_128_ap470": (12, "v0.0.2-audioset", "passt-s-f128-p16-s12-ap.470.pt"),
    "passt_s_swa_p16_s12_128_ap473": (12, "v0.0.2-audioset", "passt-s-f128-p16-s12-ap.473-swa.pt"),
    "passt_s_p16_s14_128_ap469": (14, "v0.0.2-audioset", "passt-s-f128-p16-s14-ap.469.pt"),
    "passt_s_swa_p16_s14_128_ap471": (14, "v0.0.2-audioset", "passt-s-f128-p16-s14-ap.471-swa.pt"),
    "passt_s_swa_p16_s16_128_ap473": (16, "v0.0.2-audioset", "passt-s-f128-p16-s16-ap.473-swa.pt"),
    "passt_s_p16_s16_128_ap468": (16, "v0.0.2-audioset", "passt-s-f128-p16-s16-ap.468.pt"),
}
