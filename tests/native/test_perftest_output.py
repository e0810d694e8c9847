"""perftest's result table as perftest/guest_perftest.py and perftest/guest_wire.py read it.

The samples are perftest's own formats (RESULT_FMT_LAT / REPORT_FMT_LAT, RESULT_FMT /
REPORT_FMT in perftest's src/perftest_parameters.h, tabs included); every column of a sample
holds a different value, so a column read from the wrong place shows.
"""
import os
import sys

import pytest

PERFTEST = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "perftest")
sys.path.insert(0, PERFTEST)

import guest_perftest  # noqa: E402
import guest_wire  # noqa: E402
import perftest_output  # noqa: E402

LINE = "-" * 87
BANNER = f"""{LINE}
                    RDMA_Write Latency Test
 Dual-port       : OFF\t\tDevice         : rxe0
 Number of qps   : 1\t\tTransport type : IB
 Connection type : RC\t\tUsing SRQ      : OFF
 PCIe relax order: OFF
 ibv_wr* API     : OFF
 TX depth        : 1
 Mtu             : 1024[B]
 Link type       : Ethernet
 GID index       : 1
 Max inline data : 220[B]
 rdma_cm QPs\t : OFF
 Data ex. method : Ethernet
{LINE}
 local address: LID 0000 QPN 0x0011 PSN 0x6b3c2a RKey 0x0001a4 VAddr 0x0055d1c0a3e000
 GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:00:02:15
 remote address: LID 0000 QPN 0x0012 PSN 0x1f5e77 RKey 0x0002b5 VAddr 0x0055c0e2b71000
 GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:00:02:15
{LINE}
"""
LAT_HEADER = (" #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]"
              "    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ")

# ib_write_lat -s 2 -n 1000 (microseconds)
LAT_USEC = (BANNER + LAT_HEADER + "\n"
            " 2       1000          5.12           25.40        5.61     \t       5.80        "
            "\t0.91   \t\t9.34    \t\t24.87  \n" + LINE + "\n")
LAT_USEC_COLUMNS = {"#bytes": 2, "#iterations": 1000, "t_min[usec]": 5.12,
                    "t_max[usec]": 25.40, "t_typical[usec]": 5.61, "t_avg[usec]": 5.80,
                    "t_stdev[usec]": 0.91, "99% percentile[usec]": 9.34,
                    "99.9% percentile[usec]": 24.87}

# ib_send_lat -C -s 4096 -n 500: perftest's header keeps [usec], the figures are cycles
LAT_C = (BANNER + LAT_HEADER + "\n"
         " 4096    500          13964.00        70210.00      14523.00  \t       15102.37     "
         "\t2133.00\t\t26011.00 \t\t69850.00\n" + LINE + "\n")

# the same with the unit named [cycles] in the header
LAT_CYCLES = LAT_C.replace("[usec]", "[cycles]")

# perftest before 2016 (three figures)
LAT_OLD = (BANNER + " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]\n"
           " 2       1000          1.87           12.30        1.95   \n" + LINE + "\n")

# ib_write_bw -s 65536 -n 200; older perftest says MB/sec
BW = (BANNER.replace("Latency", "BW") +
      " #bytes     #iterations    BW peak[MiB/sec]    BW average[MiB/sec]   MsgRate[Mpps]\n"
      " 65536      200              1150.27            1098.64\t\t     0.017578\n" + LINE + "\n")
BW_MB = BW.replace("MiB/sec", "MB/sec")

PARSERS = [pytest.param(guest_perftest.parse, id="guest_perftest"),
           pytest.param(guest_wire.parse, id="guest_wire")]


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("out,typical", [
    pytest.param(LAT_USEC, 5.61, id="usec"),
    pytest.param(LAT_C, 14523.00, id="report_cycles"),
    pytest.param(LAT_CYCLES, 14523.00, id="cycles"),
    pytest.param(LAT_OLD, 1.95, id="three-figures"),
])
def test_typical_latency_is_the_t_typical_column(parse, out, typical):
    assert parse(out, "t_typical") == typical


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("out", [pytest.param(BW, id="MiB"), pytest.param(BW_MB, id="MB")])
def test_bandwidth_is_the_bw_average_column(parse, out):
    assert parse(out, "BW average") == 1098.64


@pytest.mark.parametrize("parse", PARSERS)
def test_every_latency_column(parse):
    for name, value in LAT_USEC_COLUMNS.items():
        assert parse(LAT_USEC, name.split("[")[0]) == value, name


def test_latency_header_names():
    assert perftest_output.header_names(LAT_HEADER) == list(LAT_USEC_COLUMNS)
    assert perftest_output.result_rows(LAT_USEC) == [LAT_USEC_COLUMNS]


def test_header_names_with_spaces():
    assert perftest_output.header_names(
        " #flows\tfs_min_time[usec]\tfs_avg_time[usec]\tfps[flow per sec]") == [
        "#flows", "fs_min_time[usec]", "fs_avg_time[usec]", "fps[flow per sec]"]
    assert perftest_output.header_names(
        " #bytes        #iterations       t_avg[usec]    tps average") == [
        "#bytes", "#iterations", "t_avg[usec]", "tps average"]


def test_first_row_of_several():
    # ib_write_bw -a: one line per size, the first one counts
    out = (BANNER + " #bytes     #iterations    BW peak[MiB/sec]    BW average[MiB/sec]"
           "   MsgRate[Mpps]\n"
           " 2          200              9.41            8.77\t\t     4.598144\n"
           " 4          200              18.90            17.62\t\t     4.618752\n"
           + LINE + "\n")
    assert [r["#bytes"] for r in perftest_output.result_rows(out)] == [2, 4]
    assert perftest_output.result(out, "BW average") == 8.77


def test_missing_column_or_table():
    assert perftest_output.result(LAT_OLD, "t_avg") is None
    assert perftest_output.result(BANNER, "t_typical") is None
    with pytest.raises(ValueError):
        guest_perftest.parse(LAT_OLD, "t_avg")
    with pytest.raises(guest_wire.Failed):
        guest_wire.parse(BANNER + " Couldn't connect to 192.0.2.2:18516\n", "t_typical")
