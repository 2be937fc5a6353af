package domain

import (
	"reflect"
	"testing"
	"time"
)

// TestClonesShareNoMemory fills every field of each folded state (whatever fields it has
// when the test runs, so a map, slice or pointer added later is covered) and checks that
// its clone shares no map, slice array or pointee with it, and equals it.
func TestClonesShareNoMemory(t *testing.T) {
	t.Run("User", func(t *testing.T) { checkClone(t, User.Clone) })
	t.Run("Provider", func(t *testing.T) { checkClone(t, Provider.Clone) })

	// And in use: moving a clone on leaves the original as it was.
	var u User
	fillEveryField(reflect.ValueOf(&u).Elem())
	before, c := u.Clone(), u.Clone()
	c.Apply(ResetTokenIssued{TokenID: "t2", KeyID: "k", TokenHash: "h", IssuedAt: time.Unix(8, 0), ExpiresAt: time.Unix(9, 0)})
	c.Apply(RoleGranted{Role: "other"})
	if !reflect.DeepEqual(u, before) {
		t.Fatal("applying events to a user's clone changed the original")
	}
}

func checkClone[S any](t *testing.T, clone func(S) S) {
	var s S
	fillEveryField(reflect.ValueOf(&s).Elem())
	c := clone(s)
	if !reflect.DeepEqual(s, c) {
		t.Fatalf("clone differs:\n%+v\n%+v", s, c)
	}
	if shared := sharedMemory(reflect.ValueOf(s), reflect.ValueOf(c), reflect.TypeFor[S]().Name()); len(shared) > 0 {
		t.Fatalf("the clone shares memory with the original at %v", shared)
	}
}

// fillEveryField sets every field reachable from v to a non-zero value.
func fillEveryField(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(1)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		for i := range v.NumField() {
			fillEveryField(v.Field(i))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillEveryField(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 4)) // spare capacity: an append would write in place
		fillEveryField(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillEveryField(k)
		fillEveryField(e)
		v.SetMapIndex(k, e)
	}
}

// sharedMemory lists the paths where a and b hold the same map, slice array or pointee.
func sharedMemory(a, b reflect.Value, path string) []string {
	var out []string
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return nil
		}
		if a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		out = append(out, sharedMemory(a.Elem(), b.Elem(), path+".*")...)
	case reflect.Slice:
		if a.Cap() > 0 && b.Cap() > 0 && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		for i := range min(a.Len(), b.Len()) {
			out = append(out, sharedMemory(a.Index(i), b.Index(i), path+"[i]")...)
		}
	case reflect.Map:
		if !a.IsNil() && !b.IsNil() && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() {
			return nil // its *Location is never written through
		}
		for i := range a.NumField() {
			out = append(out, sharedMemory(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name)...)
		}
	}
	return out
}
