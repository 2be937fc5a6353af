package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuReading is the CPU time used so far by the whole machine and by the processes the
// harness can name, in clock ticks.
type cpuReading struct {
	machine machineCPU
	procs   processCPU
}

// readCPU reads the machine's CPU time and that of serve (servePID), PostgreSQL and this
// harness.
func readCPU(servePID int) cpuReading {
	return cpuReading{machine: readMachineCPU(), procs: readProcessCPU("/proc", servePID, os.Getpid())}
}

// Process groups of a phase's CPU time: what the time is spent on, when a request or an
// event costs more than the floor does.
const (
	procServe    = "serve"
	procPostgres = "postgres" // every process named postgres: the server and its backends
	procHarness  = "harness"  // this process: the HTTP clients and the SMTP sink
	procRest     = "rest"     // the machine's busy time none of those account for
)

// processCPU is the user and system time of each process group, in clock ticks.
type processCPU map[string]uint64

// readProcessCPU sums utime and stime from proc's <pid>/stat files by group. A
// PostgreSQL backend that ends between two readings takes its time with it (counted in
// rest); the harness's and serve's pools keep theirs.
func readProcessCPU(proc string, servePID, selfPID int) processCPU {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	out := processCPU{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(proc + "/" + e.Name() + "/stat")
		if err != nil {
			continue // ended meanwhile
		}
		comm, ticks, err := parseProcessStat(string(raw))
		if err != nil {
			continue
		}
		switch {
		case pid == servePID:
			out[procServe] += ticks
		case pid == selfPID:
			out[procHarness] += ticks
		case comm == "postgres":
			out[procPostgres] += ticks
		}
	}
	return out
}

// parseProcessStat reads the command name and utime + stime (fields 14 and 15) of a
// /proc/<pid>/stat line. The name is in parentheses and may hold spaces and
// parentheses itself, so the fields are counted from the last ")".
func parseProcessStat(line string) (comm string, ticks uint64, err error) {
	open, closing := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || closing < open {
		return "", 0, fmt.Errorf("bench: not a /proc/<pid>/stat line: %q", line)
	}
	fields := strings.Fields(line[closing+1:]) // from field 3, the state
	if len(fields) < 13 {
		return "", 0, fmt.Errorf("bench: /proc/<pid>/stat has %d fields after the name", len(fields))
	}
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return "", 0, fmt.Errorf("bench: /proc/<pid>/stat time %q: %w", f, err)
		}
		ticks += v
	}
	return line[open+1 : closing], ticks, nil
}

// processSeconds turns two readings wall apart on cpus CPUs into CPU seconds by process
// group, with the machine's busy time that no group accounts for as rest.
func processSeconds(from, to cpuReading, wall time.Duration, cpus int) map[string]float64 {
	perTick := tickSeconds(from.machine, to.machine, wall, cpus)
	if perTick == 0 || len(from.procs) == 0 || len(to.procs) == 0 {
		return nil
	}
	out := map[string]float64{}
	named := 0.0
	for _, g := range []string{procServe, procPostgres, procHarness} {
		if to.procs[g] < from.procs[g] {
			continue // a process ended: its group's time is not known
		}
		sec := float64(to.procs[g]-from.procs[g]) * perTick
		out[g] = round3(sec)
		named += sec
	}
	busy := float64(to.machine.busy-from.machine.busy) * perTick // total grew, so busy did not shrink
	out[procRest] = round3(max(busy-named, 0))
	return out
}

// machineCPU is the first line of /proc/stat: the time all CPUs spent busy and in all,
// in clock ticks since boot.
type machineCPU struct {
	busy, total uint64
}

// readMachineCPU reads /proc/stat (zero when it cannot: then no CPU figure is reported).
func readMachineCPU() machineCPU {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	c, _ := parseMachineCPU(line)
	return c
}

// parseMachineCPU reads the "cpu" line: user nice system idle iowait irq softirq steal …;
// idle and iowait are the time not busy. Guest time is counted in user already.
func parseMachineCPU(line string) (machineCPU, error) {
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("bench: not the cpu line of /proc/stat: %q", line)
	}
	var c machineCPU
	for i, f := range fields[1:9] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("bench: /proc/stat cpu field %d: %w", i+1, err)
		}
		c.total += v
		if i != 3 && i != 4 { // idle, iowait
			c.busy += v
		}
	}
	return c, nil
}

// cpuSeconds is the busy CPU time of the whole machine (every process: serve, PostgreSQL,
// this harness, the kernel) between two readings wall apart on cpus CPUs.
func cpuSeconds(from, to machineCPU, wall time.Duration, cpus int) float64 {
	if to.busy < from.busy {
		return 0
	}
	return float64(to.busy-from.busy) * tickSeconds(from, to, wall, cpus)
}

// tickSeconds is how long a clock tick is, read off the machine's own count between two
// readings (its ticks over wall on cpus), not assumed; 0 for readings that did not move on.
func tickSeconds(from, to machineCPU, wall time.Duration, cpus int) float64 {
	if to.total <= from.total {
		return 0
	}
	return float64(cpus) * wall.Seconds() / float64(to.total-from.total)
}
