package admin

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// paginate applies the API's paging to a list route: with ?limit=N (at
// most maxPage) the answer is the N items after ?after= in the order of
// key, and the Next-After header names the key to ask after next (""
// at the end); without limit the whole list, as the CLI reads it. ok
// false means the query was refused (written).
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T, key func(T) string) ([]T, bool) {
	l := r.URL.Query().Get("limit")
	if l == "" {
		return items, true
	}
	limit, err := strconv.Atoi(l)
	if err != nil || limit <= 0 {
		apiError(w, http.StatusBadRequest, "limit must be a positive number")
		return nil, false
	}
	limit = min(limit, maxPage)
	slices.SortStableFunc(items, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	if after := r.URL.Query().Get("after"); after != "" {
		i, _ := slices.BinarySearchFunc(items, after, func(x T, t string) int { return strings.Compare(key(x), t) })
		for i < len(items) && key(items[i]) <= after {
			i++
		}
		items = items[i:]
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = key(items[limit-1])
	}
	w.Header().Set("Next-After", next)
	return items, true
}
