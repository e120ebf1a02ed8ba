package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// dockerInstruction is one instruction of a Dockerfile: the command in
// upper case, its flags (--from=…) and its other arguments.
type dockerInstruction struct {
	cmd   string
	flags map[string]string
	args  []string
	line  int
}

// dockerStage is one FROM and what follows it.
type dockerStage struct {
	name, base string
	steps      []dockerInstruction
}

// parseDockerfile reads the instructions of a Dockerfile: comments go,
// continued lines are joined, arguments in JSON form are decoded. It
// reads what our Dockerfile uses, not every form the syntax allows.
func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	var joined string
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if joined == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if joined == "" {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			joined += cont + " "
			continue
		}
		joined += trimmed
		cmd, rest, _ := strings.Cut(joined, " ")
		joined = ""
		in := dockerInstruction{cmd: strings.ToUpper(cmd), flags: map[string]string{}, line: start}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			flag, after, _ := strings.Cut(rest, " ")
			k, v, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
			in.flags[k] = v
			rest = strings.TrimSpace(after)
		}
		if strings.HasPrefix(rest, "[") {
			if err := json.Unmarshal([]byte(rest), &in.args); err != nil {
				t.Fatalf("%s:%d: %v", path, start, err)
			}
		} else {
			in.args = strings.Fields(rest)
		}
		if in.cmd == "FROM" {
			s := dockerStage{base: in.args[0]}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "AS") {
				s.name = in.args[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				continue // an ARG before the first FROM
			}
			t.Fatalf("%s:%d: %s before FROM", path, start, in.cmd)
		}
		stages[len(stages)-1].steps = append(stages[len(stages)-1].steps, in)
	}
	return stages
}

// isNonroot says whether a USER or --chown value names distroless's
// nonroot user (uid 65532), and its group if one is given.
func isNonroot(v string) bool {
	user, group, hasGroup := strings.Cut(v, ":")
	ok := func(s string) bool { return s == "nonroot" || s == "65532" }
	return ok(user) && (!hasGroup || ok(group))
}

// TestDockerfileRunsAsNonrootWithItsData reads the Dockerfile (no docker
// needed): the image runs as the nonroot user, and /data, its data
// volume, is made owned by that user before anything else touches it. A
// WORKDIR or VOLUME that creates /data first leaves it root's, and
// sealgate, running as uid 65532, could not write its spool there.
func TestDockerfileRunsAsNonrootWithItsData(t *testing.T) {
	stages := parseDockerfile(t, "../../Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and the image", len(stages))
	}
	final := stages[len(stages)-1]
	user := ""
	for _, in := range final.steps {
		if in.cmd == "USER" {
			user = in.args[0]
		}
	}
	if !isNonroot(user) {
		t.Errorf("the image runs as user %q, want nonroot (65532)", user)
	}

	namesData := func(in dockerInstruction) bool {
		return slices.ContainsFunc(in.args, func(a string) bool { return strings.TrimSuffix(a, "/") == "/data" })
	}
	first := slices.IndexFunc(final.steps, namesData)
	if first < 0 {
		t.Fatal("the image has no /data")
	}
	// The first instruction that names /data must create it owned by
	// nonroot: a COPY --chown of a directory the build stage made.
	in := final.steps[first]
	if in.cmd != "COPY" || strings.TrimSuffix(in.args[len(in.args)-1], "/") != "/data" {
		t.Fatalf("Dockerfile:%d: %s %s creates /data owned by root; COPY --chown=65532:65532 a directory there first",
			in.line, in.cmd, strings.Join(in.args, " "))
	}
	if !isNonroot(in.flags["chown"]) {
		t.Errorf("Dockerfile:%d: /data copied with --chown=%q, want 65532:65532", in.line, in.flags["chown"])
	}
	src := in.args[0]
	from := slices.IndexFunc(stages, func(s dockerStage) bool { return s.name != "" && s.name == in.flags["from"] })
	if from < 0 {
		t.Fatalf("Dockerfile:%d: /data copied from %q, not a stage of this file", in.line, in.flags["from"])
	}
	if !slices.ContainsFunc(stages[from].steps, func(b dockerInstruction) bool {
		return b.cmd == "RUN" && slices.Contains(b.args, "mkdir") && slices.Contains(b.args, src)
	}) {
		t.Errorf("stage %s does not make %s, the directory copied to /data", stages[from].name, src)
	}
	// A change below a VOLUME after it is declared is discarded.
	if !slices.ContainsFunc(final.steps[first:], func(v dockerInstruction) bool { return v.cmd == "VOLUME" && namesData(v) }) {
		t.Error("no VOLUME /data after /data is made")
	}
}

// TestDockerImageBuilds builds the image and runs it, when a docker
// engine answers: sealgate, as the image's user, writes into /data
// (dkim keygen puts its key in the default data dir, ./sealgate-data
// under the working directory /data).
func TestDockerImageBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a container image")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed; the Dockerfile is only read (TestDockerfileRunsAsNonrootWithItsData)")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no docker engine answers (docker info: %v); the Dockerfile is only read (TestDockerfileRunsAsNonrootWithItsData)\n%s", err, tail(out, 500))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	image := fmt.Sprintf("sealgate-test:%d", time.Now().UnixNano())
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "docker", "build", "--build-arg", "GOFLAGS=-buildvcs=false", "-t", image, root)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, tail(out, 4000))
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", image).Run() })

	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Config.User}}", image).Output()
	if err != nil || !isNonroot(strings.TrimSpace(string(out))) {
		t.Errorf("image user %q (%v), want nonroot", out, err)
	}
	run := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", image,
		"dkim", "keygen", "--domain", "example.org", "--selector", "s1", "--algo", "ed25519")
	if out, err := run.CombinedOutput(); err != nil || !strings.Contains(string(out), "key_file: /data/sealgate-data/dkim/example.org.s1.ed25519.pem") {
		t.Errorf("the image's user cannot write into /data: %v\n%s", err, out)
	}
}
