"""perftest/goals.py's wire per-packet goal: the measured limit it prints from the profile of
the same run (perftest/guest_wire_profile.py's CSV)."""
import subprocess
import sys

from conftest import REPO

GOALS = REPO / "perftest" / "goals.py"
# per side and part: hmr↔hmr's and rxe↔rxe's profile of 2026-12-02 (6.12)
PROFILE = {"hmr↔hmr": {"requester": (1276, 494, 4903), "responder": (1780, 503, 7237)},
           "rxe↔rxe": {"requester": (1658, 545, 5671), "responder": (1609, 546, 7260)}}


def write(tmp_path, hmr_total, rxe_total, profile=True):
    (tmp_path / "wire-icount-6.12.csv").write_text(
        "link,metric,unit,value,run,note\n"
        f"hmr↔hmr,total,instructions/packet,{hmr_total},0,\n"
        f"rxe↔rxe,total,instructions/packet,{rxe_total},0,\n")
    if not profile:
        return
    rows = ["link,side,part,unit,value"]
    for link, sides in PROFILE.items():
        for side, (device, crc, kernel) in sides.items():
            for part, v in (("device", device), ("crc", crc), ("kernel", kernel),
                            ("total", device + crc + kernel)):
                rows.append(f"{link},{side},{part},instructions/packet,{v}")
    (tmp_path / "wire-profile-6.12.csv").write_text("\n".join(rows) + "\n")


def goals(tmp_path):
    r = subprocess.run([sys.executable, GOALS, tmp_path, "--only", "wire"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("wire per-packet"))
    return lines[i], lines[i + 1:]


def test_the_profile_gives_the_goal_where_it_goes_and_the_floor(tmp_path):
    write(tmp_path, 14955, 16005)
    line, after = goals(tmp_path)
    # the profile's exact counts, both sides: 16193 / 17289, not the busy time's 14955 / 16005
    assert "0.94 x" in line and "NOT met" in line and "(hmr 16193.0, rxe 17289.0 " \
        "instructions, profile)" in line
    assert after[0].startswith("    where it goes") and \
        "hmr↔hmr: device 3056, ICRC 997, kernel 12140" in after[0] and \
        "rxe↔rxe: device 3267, ICRC 1091, kernel 12931" in after[0]
    # (997 + 12140) / 17289
    assert after[1].startswith("    measured limit:") and "0.76x rxe's total" in after[1]


def test_without_a_profile_the_busy_time_gives_the_goal_alone(tmp_path):
    write(tmp_path, 7000, 16005, profile=False)
    line, after = goals(tmp_path)
    assert "0.44 x" in line and " met" in line and "NOT" not in line and "busy time" in line
    write(tmp_path, 14955, 16005, profile=False)
    line, after = goals(tmp_path)
    assert "0.93 x" in line and "NOT met" in line
    assert not any("measured limit" in ln or "where it goes" in ln for ln in after)


def write_fault(tmp_path, hmr_dropped):
    rows = ["device,mode,op,bytes,state,median_ns,p99_ns,iters,backing,fault_ns,lookup_ns",
            "cpu,cpu,write,4096,dropped,7110,7117,30,4k,,",
            "cpu,cpu,write,4096,present,321,321,30,4k,,",
            f"hmr0,odp,write,4096,dropped,{hmr_dropped},0,30,4k,8557,1448",
            "hmr0,odp,write,4096,present,5589,5589,30,4k,0,0"]
    (tmp_path / "fault-6.12.csv").write_text("\n".join(rows) + "\n")
    # fault_profile.py's parts of 2026-12-02
    (tmp_path / "fault-profile-6.12.csv").write_text(
        "kernel,part,unit,value\n6.12,hmm,instructions,1349\n6.12,hmr,instructions,806\n"
        "6.12,clock,instructions,184\n6.12,kernel,instructions,-214\n"
        "6.12,total,instructions,2125\n")


def fault_lines(tmp_path):
    r = subprocess.run([sys.executable, GOALS, tmp_path, "--only", "icount"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("fault overhead 4 KiB (6.12)"))
    return lines[i], lines[i + 1:i + 4]


def test_a_missed_fault_goal_says_where_the_instructions_go(tmp_path):
    write_fault(tmp_path, 14435)
    line, after = fault_lines(tmp_path)
    assert "1.30 x" in line and "NOT met" in line
    prof = next(ln for ln in after if "instruction profile" in ln)
    assert "HMM's look-up 1349, hmr.ko 806 (its counters' TSC reads included), " \
        "clock reads 184" in prof
    # the kernel's part, its clock reads included: (6789 + 1349 - 214 + 184) / 6789 = 1.194;
    # hmr's own may be 1.25 * 6789 - 8108 = 378 instructions, where it takes 806
    need = next(ln for ln in after if "the kernel's part alone" in ln)
    assert "1.19x" in need and "hmr's own (806 instructions)" in need and "at most 378" in need


def test_a_met_fault_goal_prints_no_profile(tmp_path):
    write_fault(tmp_path, 13000)
    line, after = fault_lines(tmp_path)
    assert " met" in line and "NOT" not in line
    assert not any("instruction profile" in ln for ln in after)
