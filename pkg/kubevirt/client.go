package kubevirt

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

var (
	typedOnce   sync.Once
	typedCodecs serializer.CodecFactory
	typedErr    error
)

// RESTClient is a client for kubevirt.io/v1 that decodes lists and watch events straight
// into the Go types. The dynamic client decodes into maps that must then be converted:
// two thirds of the CPU of reading 5,000 VMs (pprof).
func RESTClient(cfg *rest.Config) (rest.Interface, error) {
	typedOnce.Do(func() {
		scheme := runtime.NewScheme()
		if typedErr = kubevirtv1.AddToScheme(scheme); typedErr != nil {
			return
		}
		metav1.AddToGroupVersion(scheme, kubevirtv1.SchemeGroupVersion)
		typedCodecs = serializer.NewCodecFactory(scheme)
	})
	if typedErr != nil {
		return nil, typedErr
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &kubevirtv1.SchemeGroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = typedCodecs.WithoutConversion()
	c.ContentType = runtime.ContentTypeJSON
	c.AcceptContentTypes = runtime.ContentTypeJSON
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientFor(c)
}

// ListWatch lists and watches one kubevirt.io/v1 resource through a RESTClient, in
// namespace ns ("" for all), decoding pages into newList().
func ListWatch(rc rest.Interface, resource, ns string, newList func() runtime.Object) *cache.ListWatch {
	req := func(opts *metav1.ListOptions) *rest.Request {
		return rc.Get().NamespaceIfScoped(ns, ns != "").Resource(resource).VersionedParams(opts, metav1.ParameterCodec)
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list := newList()
			return list, req(&opts).Do(ctx).Into(list)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.Watch = true
			return req(&opts).Watch(ctx)
		},
	}
}

// Informer watches one kubevirt.io/v1 resource, typed, with a namespace index.
func Informer(rc rest.Interface, resource, ns string, obj runtime.Object, newList func() runtime.Object) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(ListWatch(rc, resource, ns, newList), obj, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}
