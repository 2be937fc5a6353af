package main

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"

	"selfreset/commands"
	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/postgres"
	"selfreset/password"
	"selfreset/secret"
)

// Unmatched requests spread over the unmatched-requests shards; `audit --provider` still
// prints every one that names the provider (and those on the legacy stream from before
// the shards), in feed order, and none naming another provider.
func TestAuditReadsEveryUnmatchedShard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ok(t, "", "migrate")
	e.ok(t, "", "provider", "add", "--code", "ACME", "--name", "Acme Agency", "--allow-self-reset")
	e.ok(t, "", "provider", "add", "--code", "ACME2", "--name", "Acme Two")

	ctx := context.Background()
	store, err := postgres.Open(ctx, e[config.EnvDatabaseURL])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keyID := config.KeyID([]byte(testSecret))
	keys, err := secret.NewKeyring(keyID, map[string][]byte{keyID: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(password.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	h := commands.New(commands.Config{Store: store, Hasher: password.NewBounded(hasher, 0), Secrets: keys, Common: password.NewCommonList(), Policy: domain.DefaultPolicy()})

	// History from before the shards, on the legacy stream.
	_, ver, data, err := h.Codec().Encode(domain.ResetRequestRejected{Reason: domain.ReasonUnknownAccount, Provider: "ACME", Login: "oldghost"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, domain.UnmatchedStream, eventstore.Any, eventstore.EventData{ID: uuid.New(),
		Type: "ResetRequestRejected", SchemaVersion: ver, OccurredAt: h.Now(), Data: data,
		Metadata: eventstore.Metadata{Actor: "anonymous", CorrelationID: uuid.NewString()}}); err != nil {
		t.Fatal(err)
	}
	const ghosts = 24
	for i := range ghosts {
		login := fmt.Sprintf("ghost%02d", i)
		if _, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: "ACME", Login: login, Email: login + "@example.org"}); err == nil {
			t.Fatalf("%s: a request for nobody was accepted", login)
		}
		if i%3 == 0 {
			if _, err := h.Login(ctx, commands.Login{Provider: "ACME", Login: login, Password: "whatever-it-is"}); err == nil {
				t.Fatalf("%s signed in", login)
			}
		}
		if i%4 == 0 {
			_, _ = h.RequestResetToken(ctx, commands.RequestResetToken{Provider: "ACME2", Login: login, Email: login + "@example.org"})
		}
	}
	wantUnmatched := 1 + ghosts + ghosts/3

	r := e.settled(t, 2+wantUnmatched, "audit", "--provider", "ACME", "--format", "jsonl")
	lines := parseJSONL(t, r.stdout)
	shards := map[string]int{}
	var logins []string
	for i, l := range lines {
		if i > 0 && !lines[i-1].Position.Less(l.Position) {
			t.Errorf("line %d is out of feed order", i)
		}
		if !domain.IsUnmatchedStream(l.Stream) {
			continue
		}
		if l.Data["provider"] != "ACME" {
			t.Errorf("ACME's audit printed %s's unmatched request: %v", l.Data["provider"], l.Data)
		}
		shards[l.Stream]++
		logins = append(logins, fmt.Sprint(l.Data["login"]))
	}
	if len(logins) != wantUnmatched {
		t.Fatalf("%d unmatched requests printed, want %d:\n%s", len(logins), wantUnmatched, r.stdout)
	}
	if shards[domain.UnmatchedStream] != 1 || !slices.Contains(logins, "oldghost") {
		t.Errorf("the legacy stream's request is missing: %v", shards)
	}
	// 24 different attempts land on several shards (the keyed hash spreads them).
	if len(shards) < 5 {
		t.Errorf("unmatched requests reached only %d streams: %v", len(shards), shards)
	}
	for i := range ghosts {
		if !slices.Contains(logins, fmt.Sprintf("ghost%02d", i)) {
			t.Errorf("ghost%02d's request is missing", i)
		}
	}

	// One attempted login: its requests only, wherever their shard.
	r = e.ok(t, "", "audit", "--provider", "ACME", "--login", "ghost03", "--format", "jsonl")
	if got := types(parseJSONL(t, r.stdout)); !slices.Equal(got, []string{"ResetRequestRejected", "LoginFailed"}) {
		t.Errorf("audit --login ghost03: %v\n%s", got, r.stdout)
	}
}
