package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A process tree is what -pid measures with -tree: the process and
// every descendant, found through the parent field of /proc/*/stat.
// Postfix is a master and a dozen children (smtpd, cleanup, qmgr,
// smtp, …) that come and go, so its CPU is the sum over the tree of
// user + system time, the children's own and what their reaped
// children left in cutime/cstime; a child that exits during the run
// moves its time into its parent's cutime and stays counted.

// procStat is what the tree needs from one /proc/PID/stat line.
type procStat struct {
	ppid int
	cpu  time.Duration // utime + stime + cutime + cstime
}

func readProcStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: ppid is the 4th of the line, utime, stime, cutime
	// and cstime the 14th to 17th.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return procStat{}, errors.New("short /proc stat")
	}
	var v [5]int64
	for i, idx := range []int{1, 11, 12, 13, 14} {
		if v[i], err = strconv.ParseInt(f[idx], 10, 64); err != nil {
			return procStat{}, errors.New("bad /proc stat")
		}
	}
	const ticks = 100 // USER_HZ on Linux
	return procStat{ppid: int(v[0]), cpu: time.Duration(v[1]+v[2]+v[3]+v[4]) * time.Second / ticks}, nil
}

// processTree lists pid and its live descendants.
func processTree(pid int) ([]int, error) {
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(p); err == nil {
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// treeCPU is the CPU time the tree under pid has used so far.
func treeCPU(pid int) (time.Duration, error) {
	tree, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, p := range tree {
		if st, err := readProcStat(p); err == nil { // a child may just have gone
			sum += st.cpu
		}
	}
	return sum, nil
}

// treePSS is the proportional set size of the tree under pid, in kB:
// shared pages (the libraries every Postfix daemon maps) are split
// between the processes that map them instead of counted once each.
func treePSS(pid int) (int64, error) {
	tree, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, p := range tree {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/smaps_rollup")
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Pss:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += kb
				break
			}
		}
	}
	return sum, nil
}

// pssSampler records the largest treePSS seen every interval until
// stopped: a tree has no VmHWM of its own.
type pssSampler struct {
	stop chan struct{}
	done sync.WaitGroup
	peak int64
}

func samplePSS(pid int, every time.Duration) *pssSampler {
	s := &pssSampler{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if kb, err := treePSS(pid); err == nil {
				s.peak = max(s.peak, kb)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// peakKB stops the sampler and returns the largest sum it saw.
func (s *pssSampler) peakKB() int64 {
	close(s.stop)
	s.done.Wait()
	return s.peak
}
