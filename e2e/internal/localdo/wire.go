package localdo

import (
	"encoding/json"
	"reflect"
	"strings"
)

// wire turns a value built from godo's types into the JSON the DigitalOcean API sends.
// godo tags nearly every field omitempty (it is a client: it never needs to send them),
// but the API itself sends every field: `"locked": false`, `"tags": []`, `"kernel": null`.
// So wire writes every field under its json name, ignoring omitempty, with empty
// slices as [] and nil pointers as null. Types with their own MarshalJSON (godo.Timestamp)
// keep it.
func wire(v any) any {
	return wireValue(reflect.ValueOf(v))
}

var marshalerType = reflect.TypeFor[json.Marshaler]()

func wireValue(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
		return nil
	}
	if v.Type().Implements(marshalerType) {
		return v.Interface()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return wireValue(v.Elem())
	case reflect.Struct:
		out := map[string]any{}
		wireStruct(v, out)
		return out
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Interface()
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = wireValue(v.Index(i))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return map[string]any{}
		}
		out := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out[iter.Key().String()] = wireValue(iter.Value())
		}
		return out
	default:
		return v.Interface()
	}
}

func wireStruct(v reflect.Value, out map[string]any) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			wireStruct(v.Field(i), out)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = wireValue(v.Field(i))
	}
}
