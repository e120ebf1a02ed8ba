package scheduler

import "sync"

// destSlots bounds the deliveries in flight to each destination (a
// recipient domain, or the smarthost) without letting a slow destination
// hold global slots while it waits: a message whose destination is full
// does not block, it waits in that destination's line and its attempt
// ends, freeing its global slot. When a delivery to the destination
// ends, its slot is handed to the first message in line, which is woken;
// a message that was handed a slot it did not use (deleted, held,
// delivered meanwhile) passes it on when its attempt ends. So the slowest
// destination holds at most its own bound of global slots, and its
// messages go out in the order they queued up for it.
type destSlots struct {
	limit int

	mu      sync.Mutex
	busy    map[string]int      // slots in use or handed over, per destination
	waiting map[string][]string // message IDs in line, per destination
	inLine  map[string]bool     // dest + "\x00" + id, for the above
	handed  map[string][]string // message ID → destinations whose slot it was handed
}

func newDestSlots(limit int) *destSlots {
	return &destSlots{limit: limit, busy: map[string]int{}, waiting: map[string][]string{},
		inLine: map[string]bool{}, handed: map[string][]string{}}
}

// take gives message id a slot of dest: one handed to it, else a free
// one. When dest is full, id joins its line (once) and take returns
// false; the caller must not deliver to dest now.
func (d *destSlots) take(dest, id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if hs := d.handed[id]; len(hs) > 0 {
		for i, h := range hs {
			if h == dest {
				d.handed[id] = append(hs[:i:i], hs[i+1:]...)
				if len(d.handed[id]) == 0 {
					delete(d.handed, id)
				}
				return true
			}
		}
	}
	if d.busy[dest] < d.limit {
		d.busy[dest]++
		return true
	}
	if key := dest + "\x00" + id; !d.inLine[key] {
		d.inLine[key] = true
		d.waiting[dest] = append(d.waiting[dest], id)
	}
	return false
}

// release gives back a slot of dest. It returns the ID of the message
// the slot was handed to, which the caller must wake, or "".
func (d *destSlots) release(dest string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if line := d.waiting[dest]; len(line) > 0 {
		id := line[0]
		if len(line) == 1 {
			delete(d.waiting, dest)
		} else {
			d.waiting[dest] = line[1:]
		}
		delete(d.inLine, dest+"\x00"+id)
		d.handed[id] = append(d.handed[id], dest)
		return id
	}
	if d.busy[dest]--; d.busy[dest] <= 0 {
		delete(d.busy, dest)
	}
	return ""
}

// drop passes on the slots handed to id that its attempt did not use;
// it returns the messages to wake.
func (d *destSlots) drop(id string) []string {
	d.mu.Lock()
	dests := d.handed[id]
	delete(d.handed, id)
	d.mu.Unlock()
	var wake []string
	for _, dest := range dests {
		if w := d.release(dest); w != "" {
			wake = append(wake, w)
		}
	}
	return wake
}
